"""The three findings: each verdict follows its written criterion, both ways."""

import copy

import pytest

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.evaluation.findings import Roles, finest_band, paper_findings, render_findings

ROLES = Roles("data", "ldm-c", "ldm-g", "vae-c", "vae-g")


def _model(crps, small, meso, error, partial, wasserstein):
    return {
        "variables": {v: {"crps": crps} for v in VARIABLES},
        "psd_sit_band_log10_ratio": {"large_gt400km": 0.0, "meso_100_400km": meso, "small_lt100km": small},
        "cover_calibration": {"error": error, "partial_error": partial},
        "miz_area_wasserstein_km2": wasserstein,
    }


@pytest.fixture
def metrics():
    return {
        "models": {
            "data": _model(1.0, -0.02, 0.0, 0.30, 0.4, 9e5),
            "ldm-c": _model(1.2, -0.8, -0.2, 0.10, 0.2, 2e5),
            "ldm-g": _model(0.9, -0.9, -0.3, 0.25, 0.3, 6e5),
        },
        "reconstructions": {
            "vae-c": {"psd_sit_band_log10_ratio": {"small_lt100km": -0.7, "meso_100_400km": -0.15}},
            "vae-g": {"psd_sit_band_log10_ratio": {"small_lt100km": -0.8, "meso_100_400km": -0.2}},
        },
    }


def test_all_three_hold_on_a_run_that_shows_them(metrics):
    findings = paper_findings(metrics, ROLES)
    assert [f.holds for f in findings] == [True, True, True]
    text = "\n".join(render_findings(findings))
    assert text.count("holds") == 3 and "small_lt100km" in text and "CRPS of ldm-c" in text


def test_each_finding_can_fail(metrics):
    worse = copy.deepcopy(metrics)
    worse["models"]["ldm-g"]["variables"]["sic"]["crps"] = 1.6  # 1.6x data space: not similar
    assert not paper_findings(worse, ROLES)[0].holds

    sharp_vae = copy.deepcopy(metrics)
    sharp_vae["reconstructions"]["vae-c"]["psd_sit_band_log10_ratio"]["small_lt100km"] = 0.0
    assert not paper_findings(sharp_vae, ROLES)[1].holds  # the VAE does not smooth: not the latent mapping

    smoother_data = copy.deepcopy(metrics)
    smoother_data["models"]["data"]["psd_sit_band_log10_ratio"]["small_lt100km"] = -0.85
    assert not paper_findings(smoother_data, ROLES)[1].holds  # data space smooths as much

    gaussian_better = copy.deepcopy(metrics)
    gaussian_better["models"]["ldm-g"]["miz_area_wasserstein_km2"] = 1e5
    finding = paper_findings(gaussian_better, ROLES)[2]
    assert not finding.holds and "does not hold in this run" in render_findings([finding])[0]


def test_coarse_grid_uses_the_finest_band_with_rings(metrics):
    for model in metrics["models"].values():
        model["psd_sit_band_log10_ratio"]["small_lt100km"] = None  # no rings below 100 km at 48 km cells
    for rec in metrics["reconstructions"].values():
        rec["psd_sit_band_log10_ratio"]["small_lt100km"] = None
    assert finest_band(metrics["models"]["data"]["psd_sit_band_log10_ratio"]) == "meso_100_400km"
    smoothing = paper_findings(metrics, ROLES)[1]
    assert smoothing.holds and "meso_100_400km" in smoothing.lines[0]
    metrics["models"]["ldm-c"]["cover_calibration"]["error"] = None  # NaN in metrics.json: n/a, never holds
    finding = paper_findings(metrics, ROLES)[2]
    assert not finding.holds and "n/a" in finding.lines[0]
