"""`report.md`: the evaluation's metrics as Markdown tables with the figures linked.

Built only from the ``metrics.json`` dictionary, so a report can be regenerated (or several
evaluations merged) without touching the data. All models are in one table per kind of score,
as in the paper's comparison of the data-space model with the Gaussian and censored LDMs; the
floor (validation states scored like a model) is the first row of every table, and every score
is followed by its 95 % bootstrap interval in brackets. The study's findings, when decided
(``--findings``), come first (:func:`.findings.render_findings`, the demo uses the same).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpc_seaice.data.format.variables import UNITS
from hpc_seaice.evaluation.findings import render_findings
from hpc_seaice.evaluation.plateaus import PLATEAUS
from hpc_seaice.evaluation.report_tables import (
    aggregate_table,
    checks_table,
    deformation_table,
    floor_note,
    spectra_table,
    variogram_table,
)
from hpc_seaice.evaluation.report_tables import ci as _ci
from hpc_seaice.evaluation.report_tables import fmt as _fmt
from hpc_seaice.evaluation.report_tables import sources_of as _sources
from hpc_seaice.evaluation.report_tables import table as _table
from hpc_seaice.evaluation.spectra import BANDS_KM
from hpc_seaice.fileio import atomic_write

FIGURE_TITLES = {
    "maps": "Thickness, concentration, speed and total deformation (test state vs first sample)",
    "spectra": "Isotropic power spectral density of thickness over the central Arctic",
    "spectra_all": "Isotropic power spectral density of every variable and of the ice speed",
    "calibration": "Ice-cover probability: generated vs test, per 5 % bin of the test probability",
    "miz_area": "Marginal-ice-zone area distributions",
    "aggregates": "Distributions of the pan-Arctic aggregates per state",
    "deformation": "Spatial scaling of total deformation over the pack: mean of its q-th power against box side",
}


_BAND_HEADS = [f"PSD {name.split('_', 1)[1].replace('_', '-')}" for name, _, _ in BANDS_KM]


def _bands(m: dict[str, Any], var: str = "sit") -> list[str]:
    if "intervals" in m:
        return [_ci(m, f"psd/{var}/{name}") for name, _, _ in BANDS_KM]
    bands = m.get("psd_sit_band_log10_ratio", {})
    return [_fmt(bands.get(name)) for name, _, _ in BANDS_KM]


def _field_scores(metrics: dict[str, Any], models: dict[str, Any], box: dict[str, int]) -> list[str]:
    ref_miz = metrics["reference"]["miz_area_km2"]
    estimator = metrics["spectrum"].get("estimator", "raw")
    lines = [
        "",
        "## Field-level scores",
        "",
        "PSD log-ratio: mean over wavenumbers of log10(PSD / test PSD) of thickness in the central-"
        f"Arctic box y {box['y0']}:{box['y1']}, x {box['x0']}:{box['x1']} ({estimator} estimator), over all "
        "wavenumbers and per wavelength band (> 400 km, 100-400 km, < 100 km; n/a: no wavenumber in the band); "
        "0 = same energy, negative = smoother than the test set. Calibration error: mean |generated - test| "
        "ice-cover probability over the 5 % bins of the test probability, weighted by cell count (cal. w.) and "
        "unweighted, one value per bin (cal. unw.); cal. 0<p<1: mean |generated - test| over the cells whose "
        "test probability is neither 0 nor 1. MIZ area (0.15 <= sic <= 0.8, per-cell areas) in 10^3 km^2; W1: "
        f"Wasserstein distance to the test distribution (test: {_fmt(ref_miz['mean'] / 1e3)} +- "
        f"{_fmt(ref_miz['std'] / 1e3)}).",
        "",
    ]
    rows = []
    for name, m in models.items():
        miz, w1, cal = m["miz_area_km2"], m["miz_area_wasserstein_km2"], m["cover_calibration"]
        if "intervals" in m:
            w1_text = _ci(m, "aggregate/miz_area/wasserstein", 1e3)  # million km^2 -> 10^3 km^2
            cal_text = [_ci(m, f"calibration/{k}") for k in ("error", "unweighted_error", "partial_error")]
        else:
            w1_text = "n/a" if w1 is None else _fmt(w1 / 1e3)
            cal_text = [_fmt(cal["error"]), _fmt(cal.get("unweighted_error")), _fmt(cal.get("partial_error"))]
        psd_all = _ci(m, "psd/sit/all") if "intervals" in m else _fmt(m["psd_sit_log10_ratio"])
        rows.append(
            [name, psd_all, *_bands(m)] + cal_text + [f"{_fmt(miz['mean'] / 1e3)} +- {_fmt(miz['std'] / 1e3)}", w1_text]
        )
    header = ["model", "PSD log-ratio", *_BAND_HEADS, "cal. w.", "cal. unw.", "cal. 0<p<1", "MIZ area", "MIZ W1"]
    return lines + _table(header, rows)


def _plateau_table(metrics: dict[str, Any], models: dict[str, Any]) -> list[str]:
    ref = metrics["reference"].get("plateau_shares")
    if ref is None:
        return []
    keys = [key for key, _, _ in PLATEAUS]
    lines = [
        "",
        "## Plateaus",
        "",
        "Percentage of ocean values exactly at each physical plateau (after clipping), the test set first.",
        "",
    ]
    rows = [["test"] + [f"{100 * ref[k]:.3g}" for k in keys]]
    models = _sources(metrics)
    rows += [[name] + [f"{100 * m['plateau_shares'][k]:.3g}" for k in keys] for name, m in models.items()]
    return lines + _table(["source", *keys], rows)


def _sweep_table(sweep: dict[str, list[dict[str, Any]]]) -> list[str]:
    if not sweep:
        return []
    lines = [
        "",
        "## Heun-step sweep",
        "",
        "The same run and noise sampled with different numbers of Heun steps (2 N - 1 network evaluations).",
    ]
    for run, rows in sweep.items():
        lines += ["", f"`{run}`", ""]
        body = [
            [str(r["steps"]), _fmt(r["network_evaluations"]), _fmt(r["crps"].get("sit")), _fmt(r["crps"].get("sic"))]
            + [_fmt(r["psd_sit_band_log10_ratio"].get(name)) for name, _, _ in BANDS_KM]
            + [_fmt(r["calibration_unweighted_error"]), _fmt(r["miz_area_wasserstein_km2"])]
            for r in rows
        ]
        header = ["steps", "NFE", "CRPS sit", "CRPS sic", *_BAND_HEADS, "cal. unw.", "MIZ W1 (km^2)"]
        lines += _table(header, body)
    return lines


def render_report(metrics: dict[str, Any]) -> str:
    """The Markdown text of the report."""
    variables = metrics["variables"]
    models = metrics.get("models", {})
    recs = metrics.get("reconstructions", {})
    box = metrics["spectrum"]["box"]
    lines = [
        "# hpc-seaice evaluation",
        "",
        f"Reference: `{metrics['data']}`, split `{metrics['split']}`, {metrics['num_states']} states, "
        f"grid {metrics['grid'][0]}x{metrics['grid'][1]}, spectrum wavelengths at {metrics['dx_km']:.4g} km per "
        f"cell; cell areas and spacings: {metrics.get('geometry', {}).get('source', 'n/a')}. All spatial means "
        "are over ocean cells.",
        "",
    ]
    if models:
        sources = _sources(metrics)
        lines += ["## Models", ""]
        lines += _table(
            ["model", "file", "samples", "out-of-bounds from"],
            [[name, f"`{m['file']}`", str(m["num_samples"]), m["out_of_bounds_source"]] for name, m in sources.items()],
        )
        lines += floor_note(metrics)
        if metrics.get("findings"):
            lines += ["", "## Findings", "", *render_findings(metrics["findings"])]
        lines += [
            "",
            "## Per-variable scores",
            "",
            "CRPS: the generated ensemble scored against every test state (standard estimator; fair "
            "estimator in metrics.json). Mean/std RMSE and bias: the generated mean and standard-deviation "
            "fields against the test climatology. OOB: percentage of ocean values outside the physical "
            "bounds (before clipping when the file stores `<var>_raw`; n/a for a censored decoder, whose "
            "values beyond a bound encode the plateau). Brackets: 95 % bootstrap interval.",
            "",
        ]
        rows = []
        for var in variables:
            for name, m in sources.items():
                s = m["variables"][var]
                oob = s["out_of_bounds"]
                keys = ("crps", "mean_rmse", "mean_bias", "std_rmse", "std_bias")
                values = [_ci(m, f"{k}/{var}") if "intervals" in m else _fmt(s[k]) for k in keys]
                rows.append([f"{var} ({UNITS[var]})", name, *values, "n/a" if oob is None else f"{100 * oob:.3g}"])
        lines += _table(["variable", "model", "CRPS", "mean RMSE", "mean bias", "std RMSE", "std bias", "OOB %"], rows)
        lines += _field_scores(metrics, sources, box)
        lines += aggregate_table(metrics, sources)
        lines += spectra_table(sources)
        lines += variogram_table(sources)
        lines += checks_table(metrics, sources)
        lines += deformation_table(metrics, sources)
        lines += _plateau_table(metrics, models)
        lines += _sweep_table(metrics.get("step_sweep", {}))
    if recs:
        lines += [
            "",
            "## Autoencoder reconstructions",
            "",
            "Deterministic reconstruction (encoder mean, clamped decoder mean) of every test state.",
            "",
        ]
        header = ["run", "step"] + [f"RMSE {v} ({UNITS[v]})" for v in variables] + ["PSD log-ratio", *_BAND_HEADS]
        rows = [
            [name, str(r["step"])]
            + [_fmt(r["variables"][v]["rmse"]) for v in variables]
            + [_fmt(r["psd_sit_log10_ratio"])]
            + _bands(r)
            for name, r in recs.items()
        ]
        lines += _table(header, rows)
    lines += figure_lines(metrics.get("figures", {}), FIGURE_TITLES)
    return "\n".join(lines).rstrip() + "\n"


def figure_lines(figures: dict[str, str], titles: dict[str, str]) -> list[str]:
    """A report's figure section: a heading and the image of each figure ``metrics.json`` lists."""
    lines = ["", "## Figures", ""] if figures else []
    for key, rel in figures.items():
        title = titles.get(key, key)
        lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    return lines


def write_report(path: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write :func:`render_report` to ``path`` (atomically)."""
    return atomic_write(path, render_report(metrics))
