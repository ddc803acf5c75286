"""Forecast scores (`hpc-seaice evaluate --forecast`) on constructed forecasts with known answers.

The truth is a small synthetic data set (32 x 32, daily, the training split 2009, the forecast
from 2010-02-01). Forecast files are built here from the data set's own states: a perfect
forecast, persistence itself, a biased forecast, and Gaussian ensembles whose members and truth
are exchangeable (reliable) or whose spread is 0.3 of that (under-dispersive). The baselines
are recomputed independently from ``hs.open_dataset`` and pandas' day of year.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hpc_seaice.cli import main
from hpc_seaice.data.format.forecast_file import forecast_dataset, member_fields, read_forecast, write_forecast
from hpc_seaice.data.format.samples_file import samples_dataset, variable_attrs, write_netcdf, write_samples
from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.data.loading.lazy import open_dataset
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation.forecast import evaluate_forecast
from hpc_seaice.evaluation.forecast_scores import RankHistogram, score_ensemble

REFERENCE = np.datetime64("2010-02-01T00:00:00", "s")
LEADS = 10
SPLITS = {
    "train": ["2009-01-01", "2009-12-31"],
    "validation": ["2010-01-01", "2010-01-31"],
    "test": ["2010-02-01", "2010-03-31"],
}
SIGMA = np.array([0.2, 0.05, 0.05, 0.02, 0.02], dtype=np.float32)  # per variable, physical units


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hpc_seaice.data.synth.generate import generate

    root = tmp_path_factory.mktemp("forecast-data")
    generate(
        root,
        grid=32,
        start="2009-01-01",
        end="2010-03-31",
        freq="1D",
        seed=3,
        shard_size=64,
        progress=False,
        splits=SPLITS,
    )
    return root


@pytest.fixture(scope="module")
def states(data: Path):
    """The data set read independently (lazy xarray over the shards):
    ``(ds, mask, valid times, truth [T, C, H, W], initial [C, H, W])``."""
    ds = open_dataset(data)
    valid = REFERENCE + np.arange(1, LEADS + 1).astype("timedelta64[D]")
    truth = np.stack([ds[v].sel(time=valid.astype("datetime64[ns]")).values for v in VARIABLES], axis=1)
    initial = np.stack([ds[v].sel(time=np.datetime64(REFERENCE, "ns")).values for v in VARIABLES])
    return ds, ds["mask"].values.astype(np.float32), valid, truth.astype(np.float32), initial.astype(np.float32)


def _write(path: Path, members: np.ndarray, states, reference=REFERENCE, valid=None) -> Path:
    ds, mask, times, _, _ = states
    fc = forecast_dataset(
        members,
        mask,
        ds["lat"].values,
        ds["lon"].values,
        reference,
        times if valid is None else valid,
        {"run": "constructed", "data": "synthetic", "seed": 0},
    )
    return write_forecast(path, fc)


def _score(path: Path, data: Path, out: Path, **kwargs) -> dict:
    return evaluate_forecast(path, data, out, figures=False, progress=False, **kwargs)


def _ocean_rmse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[..., C]`` RMSE over ocean cells, numpy only."""
    ocean = mask > 0.5
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64))[..., ocean]
    return np.sqrt((d**2).mean(axis=-1))


# --------------------------------------------------------------------------------------------
# The file format
# --------------------------------------------------------------------------------------------


def test_forecast_file_opens_in_xarray_as_it_is(states, tmp_path):
    _, mask, valid, truth, _ = states
    members = np.stack([truth, truth + 1.0])
    path = _write(tmp_path / "f.nc", members, states)
    with xr.open_dataset(path) as ds:  # no engine, no options
        assert dict(ds.sizes) == {"member": 2, "time": LEADS, "y": 32, "x": 32}
        for c, var in enumerate(VARIABLES):
            assert ds[var].dims == ("member", "time", "y", "x")
            assert ds[var].attrs["units"] == variable_attrs(var)["units"]  # the samples file's units
            np.testing.assert_array_equal(ds[var].values[1], truth[:, c] + 1.0)
        assert ds["time"].dtype.kind == "M" and ds["lead_time"].dtype.kind == "m"
        assert ds["lead_time"].dims == ("time",) and ds["forecast_reference_time"].ndim == 0
        assert ds["lead_time"].attrs["standard_name"] == "forecast_period"
        np.testing.assert_array_equal(ds["time"].values, valid.astype("datetime64[ns]"))
        np.testing.assert_array_equal(ds["lead_time"].values, ds["time"].values - ds["forecast_reference_time"].values)
        assert ds["lead_time"].values[0] == np.timedelta64(1, "D")
        assert ds.attrs["run"] == "constructed" and ds.attrs["data"] == "synthetic" and ds.attrs["seed"] == 0
        assert ds.attrs["hpc_seaice_file"] == "forecast" and ds.attrs["Conventions"].startswith("CF")
        assert {"lat", "lon", "x", "y"} <= set(ds.coords) and ds["sit"].attrs["grid_mapping"] == "polar_stereographic"
    ds = read_forecast(path)
    try:
        np.testing.assert_array_equal(member_fields(ds, 3), members[:, 3])
    finally:
        ds.close()


def test_reader_refuses_what_is_not_a_forecast_file(states, tmp_path):
    ds, mask, _, truth, _ = states
    samples = write_samples(
        tmp_path / "samples.nc", samples_dataset(truth[:2], mask, ds["lat"].values, ds["lon"].values, {})
    )
    with pytest.raises(UserError, match="is not a forecast file: no forecast_reference_time and no lead_time"):
        read_forecast(samples)
    text = tmp_path / "notes.nc"
    text.write_text("hello")
    with pytest.raises(UserError, match="notes.nc is not a readable NetCDF file"):
        read_forecast(text)
    fc = _write(tmp_path / "f.nc", truth[None], states)
    with xr.open_dataset(fc) as good:
        full = good.load()
    write_netcdf(tmp_path / "nosiv.nc", full.drop_vars("siv"), {})
    with pytest.raises(UserError, match="lacks variable\\(s\\) siv"):
        read_forecast(tmp_path / "nosiv.nc")
    shifted = full.assign_coords(lead_time=full["lead_time"] + np.timedelta64(6, "h"))
    write_netcdf(tmp_path / "lead.nc", shifted, {})
    with pytest.raises(UserError, match="lead_time 30 h at 2010-02-02T00:00:00 is not time - forecast_reference_time"):
        read_forecast(tmp_path / "lead.nc")
    noseed = full.copy()
    del noseed.attrs["seed"]
    write_netcdf(tmp_path / "noseed.nc", noseed, {})
    with pytest.raises(UserError, match="lacks the global attribute\\(s\\) seed"):
        read_forecast(tmp_path / "noseed.nc")


# --------------------------------------------------------------------------------------------
# The scores on analytic cases
# --------------------------------------------------------------------------------------------


def test_scores_of_a_two_member_ensemble_by_hand():
    """Members 0 and 2 against truth 0 in every ocean cell, NaN on land: mean 1, RMSE 1, spread sqrt(2),
    spread/RMSE sqrt(3/2) sqrt(2) = sqrt(3); CRPS 1 - 0.5 (2 + 2) / 4 = 0.5, fair CRPS 1 - 0.5 (2 + 2) / 2 = 0."""
    mask = np.ones((4, 5), np.float32)
    mask[0] = 0
    x = np.zeros((2, len(VARIABLES), 4, 5))
    x[1] = 2.0
    x[:, :, 0] = np.nan  # land: excluded by the mask
    s = score_ensemble(x, np.zeros((len(VARIABLES), 4, 5)), mask)
    for var in VARIABLES:
        assert s[var]["rmse"] == pytest.approx(1.0) and s[var]["bias"] == pytest.approx(1.0)
        assert s[var]["spread"] == pytest.approx(np.sqrt(2.0))
        assert s[var]["spread_skill"] == pytest.approx(np.sqrt(3.0))
        assert s[var]["crps"] == pytest.approx(0.5) and s[var]["crps_fair"] == pytest.approx(0.0)
    one = score_ensemble(x[1:], np.zeros((len(VARIABLES), 4, 5)), mask)["sit"]
    assert one["crps"] == pytest.approx(2.0) and one["spread"] is None and one["spread_skill"] is None  # CRPS = MAE


def test_rank_histogram_ranks_and_ties():
    h = RankHistogram(3, variables=1)
    members = np.array([[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 2.0]]])  # [M=3, C=1, P=2]
    h.add(members, np.array([[-1.0, 5.0]]))  # below all: rank 0; above all: rank 3
    h.add(members, np.array([[1.5, 0.5]]))  # ranks 2 and 1
    assert h.counts.tolist() == [[1, 1, 1, 1]]
    ties = RankHistogram(3, variables=1)
    for _ in range(400):
        ties.add(np.zeros((3, 1, 10)), np.zeros((1, 10)))  # every member equals the truth
    f = ties.counts[0] / ties.counts.sum()
    assert np.abs(f - 0.25).max() < 0.03, f  # ties spread evenly, not all in bin 0


# --------------------------------------------------------------------------------------------
# Constructed forecasts through the whole evaluation
# --------------------------------------------------------------------------------------------


def test_perfect_forecast(data, states, tmp_path, capsys):
    _, mask, _, truth, _ = states
    path = _write(tmp_path / "perfect.nc", np.stack([truth] * 3), states)
    assert main(["evaluate", "--forecast", str(path), "--data", str(data)]) == 0
    out = tmp_path / "perfect-scores"  # the default: beside the forecast
    assert "3 member(s), 10 lead(s) from 2010-02-01T00:00:00" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["leads"]) == LEADS
    for lead in m["leads"]:
        for var in VARIABLES:
            assert lead["forecast"][var]["rmse"] == 0.0 and lead["forecast"][var]["crps"] == 0.0
            assert lead["persistence"][var]["rmse"] > 0 and lead["climatology"][var]["rmse"] > 0
            assert lead["skill"]["persistence"][var]["rmse"] == 1.0 and lead["skill"]["climatology"][var]["rmse"] == 1.0
            assert lead["forecast"][var]["spread_skill"] is None  # no error to compare the (zero) spread with
        for name in ("extent", "area", "volume", "miz_area"):
            agg = lead["aggregates"][name]  # sums over cells: exact up to the last bits
            assert agg["error"] == pytest.approx(0.0, abs=1e-9) and agg["crps"] == pytest.approx(0.0, abs=1e-9)
    assert all(m["summary"][v]["skill_persistence"] == 1.0 for v in VARIABLES)
    for var in VARIABLES:
        assert m["rank_histogram"][var]["reliability_index"] < 0.05  # all ties: spread evenly
    report = (out / "report.md").read_text()
    assert "## Scores by lead" in report and "| 10 d | 2010-02-11T00:00:00 | 0 | 0 |" in report
    for name in m["figures"].values():
        assert (out / name).is_file() and f"]({name})" in report
    assert set(m["figures"]) == {"skill", "spread_skill", "maps", "rank_histograms", "aggregates"}


def test_persistence_as_the_forecast_scores_like_the_baseline(data, states, tmp_path):
    _, mask, valid, truth, initial = states
    held = np.broadcast_to(initial, truth.shape)
    m = _score(_write(tmp_path / "p.nc", np.stack([held, held]), states), data, tmp_path / "out")
    for lead in m["leads"]:
        for var in VARIABLES:
            for key in ("rmse", "bias", "crps"):
                assert lead["forecast"][var][key] == lead["persistence"][var][key]
            assert lead["skill"]["persistence"][var]["rmse"] == 0.0 and lead["skill"]["persistence"][var]["crps"] == 0.0
    # the baselines against an independent computation: persistence, and the climatology of the
    # 2009 states within 15 days of year (pandas' day of year, 365-day circular distance)
    ds = states[0]
    np.testing.assert_allclose(
        [[lead["persistence"][v]["rmse"] for v in VARIABLES] for lead in m["leads"]],
        _ocean_rmse(initial[None], truth, mask),
        rtol=1e-10,
    )
    train = ds.sel(time=slice("2009-01-01", "2009-12-31"))
    doy = pd.DatetimeIndex(train["time"].values).dayofyear.to_numpy()
    train = {v: train[v].values.astype(np.float64) for v in VARIABLES}  # read once
    expected = []
    for k, t in enumerate(valid):
        d = np.abs(doy - pd.Timestamp(t).dayofyear) % 365
        chosen = np.minimum(d, 365 - d) <= 15
        clim = np.stack([train[v][chosen].mean(axis=0) for v in VARIABLES])
        expected.append(_ocean_rmse(clim, truth[k], mask))
        assert m["leads"][k]["climatology_states"] == chosen.sum() == 31
    np.testing.assert_allclose(
        [[lead["climatology"][v]["rmse"] for v in VARIABLES] for lead in m["leads"]], expected, rtol=1e-6
    )
    assert m["leads"][0]["climatology"]["sit"]["crps"] > 0  # the one-member CRPS (MAE) is there too
    assert m["climatology"] == {"split": "train", "window_days": 15, "year_days": 365}


def test_biased_forecast_has_rmse_of_the_bias_over_the_ocean(data, states, tmp_path):
    _, mask, _, truth, _ = states
    bias = {"sit": 0.3, "siu": 0.05, "siv": -0.02}  # inside the bounds: sit >= 0, velocities unbounded
    biased = truth.copy()
    for var, b in bias.items():
        biased[:, VARIABLES.index(var)] += b
    biased[:, :, mask < 0.5] = 1e6  # land: excluded by the mask
    m = _score(_write(tmp_path / "b.nc", np.stack([biased, biased]), states), data, tmp_path / "out")
    area = m["geometry"]["ocean_area_km2"]
    for lead in m["leads"]:
        for var in VARIABLES:
            b = bias.get(var, 0.0)
            f = lead["forecast"][var]
            assert f["rmse"] == pytest.approx(abs(b), rel=1e-5, abs=1e-12)
            assert f["bias"] == pytest.approx(b, rel=1e-5, abs=1e-12)
            assert f["crps"] == pytest.approx(abs(b), rel=1e-5, abs=1e-12)  # two equal members: MAE
        # volume = sum sit x cell area: off by 0.3 m x the ocean area (thousand km^3)
        assert lead["aggregates"]["volume"]["error"] == pytest.approx(0.3 * area / 1e6, rel=1e-5)
        assert lead["aggregates"]["extent"]["error"] == pytest.approx(0.0, abs=1e-9)  # sic unchanged


def _gaussian(states, spread: float, members: int = 4, seed: int = 0) -> np.ndarray:
    """Members ``c + spread sigma eps_j`` around a centre ``c = truth + sigma eta``: for ``spread = 1``
    the truth ``c - sigma eta`` and the members are independent draws of one Gaussian about ``c``."""
    _, mask, _, truth, _ = states
    rng = np.random.default_rng(seed)
    s = SIGMA[None, :, None, None]
    centre = truth + s * rng.standard_normal(truth.shape).astype(np.float32)
    x = centre[None] + spread * s[None] * rng.standard_normal((members, *truth.shape)).astype(np.float32)
    return np.where(mask > 0.5, x, 0.0).astype(np.float32)


def test_ensemble_from_the_truths_distribution_is_reliable(data, states, tmp_path):
    """566 ocean cells x 10 leads = 5660 ranks per variable, 4 members: a flat histogram's frequencies
    have a standard error of 0.0053, so the reliability index of a reliable ensemble is about 0.02 and
    its outer ratio 1 +- 0.016; the pooled spread/RMSE is 1 +- about 0.015. Tolerances are about three
    standard errors; without the (M+1)/M correction the ratio would be sqrt(4/5) = 0.89 and fail."""
    m = _score(_write(tmp_path / "g.nc", _gaussian(states, 1.0), states), data, tmp_path / "out")
    for var in VARIABLES:
        assert 0.96 < m["summary"][var]["spread_skill"] < 1.04, (var, m["summary"][var])
        per_lead = [lead["forecast"][var]["spread_skill"] for lead in m["leads"]]
        assert all(0.85 < r < 1.15 for r in per_lead), (var, per_lead)
        h = m["rank_histogram"][var]
        assert sum(h["counts"]) == 566 * LEADS
        assert h["reliability_index"] < 0.05 and abs(h["outer_ratio"] - 1.0) < 0.06, (var, h)
        assert abs(h["mean_rank"]) < 0.02


def test_under_dispersive_ensemble_is_u_shaped(data, states, tmp_path):
    """Spread 0.3 of the error's: spread/RMSE about 0.3 sqrt(5/4) / sqrt(1 + 0.09 / 4) = 0.33."""
    m = _score(_write(tmp_path / "u.nc", _gaussian(states, 0.3), states), data, tmp_path / "out")
    for var in VARIABLES:
        assert 0.28 < m["summary"][var]["spread_skill"] < 0.4, (var, m["summary"][var])
        assert all(lead["forecast"][var]["spread_skill"] < 0.5 for lead in m["leads"])
        f = np.array(m["rank_histogram"][var]["frequencies"])
        assert f[0] > 2 * f[1:-1].max() and f[-1] > 2 * f[1:-1].max(), (var, f)
        # P(truth outside the 4 members) = 0.762 (Monte Carlo, 2e6 draws): outer ratio 0.762 x 5 / 2 = 1.91
        assert 1.8 < m["rank_histogram"][var]["outer_ratio"] < 2.0


# --------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2
# --------------------------------------------------------------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_bad_inputs(data, states, tmp_path, capsys):
    ds, mask, valid, truth, initial = states
    out = str(tmp_path / "out")

    def refused(path: Path, *extra: str) -> str:
        assert main(["evaluate", "--forecast", str(path), "--data", str(data), "--out", out, *extra]) == 2
        return _one_line_error(capsys)

    one = truth[None, :3]
    late = np.datetime64("2010-03-30T00:00:00", "s")
    beyond = _write(
        tmp_path / "beyond.nc", one, states, late - np.timedelta64(1, "D"), late + np.arange(3).astype("timedelta64[D]")
    )
    err = refused(beyond)
    assert "beyond.nc" in err and "valid time 2010-04-01T00:00:00 is not a time of the data set" in err

    noon = REFERENCE + np.array([12, 36, 60]).astype("timedelta64[h]")
    err = refused(_write(tmp_path / "noon.nc", one, states, REFERENCE, noon))
    assert "valid time 2010-02-01T12:00:00 is not a time of the data set" in err

    early = np.datetime64("2008-12-31T00:00:00", "s")
    starts = early + np.arange(1, 4).astype("timedelta64[D]")
    err = refused(_write(tmp_path / "early.nc", one, states, early, starts))
    assert "forecast_reference_time 2008-12-31T00:00:00 is not a time of the data set" in err

    good = _write(tmp_path / "good.nc", one, states, REFERENCE, valid[:3])
    with xr.open_dataset(good) as g:
        full = g.load()
    write_netcdf(tmp_path / "nosic.nc", full.drop_vars("sic"), {})
    assert "nosic.nc lacks variable(s) sic" in refused(tmp_path / "nosic.nc")

    small = forecast_dataset(
        np.zeros((1, 3, 5, 16, 16), np.float32),
        np.ones((16, 16)),
        np.zeros((16, 16)),
        np.zeros((16, 16)),
        REFERENCE,
        valid[:3],
        {"run": "r", "data": "d", "seed": 0},
    )
    err = refused(write_forecast(tmp_path / "small.nc", small))
    assert "grid mismatch: forecast file" in err and "small.nc is 16x16" in err and "32x32" in err
    other = forecast_dataset(
        one,
        np.ones_like(mask),
        ds["lat"].values,
        ds["lon"].values,
        REFERENCE,
        valid[:3],
        {"run": "r", "data": "d", "seed": 0},
    )
    assert "land mask mismatch: forecast file" in refused(write_forecast(tmp_path / "mask.nc", other))

    samples = write_samples(tmp_path / "s.nc", samples_dataset(truth[:2], mask, ds["lat"].values, ds["lon"].values, {}))
    err = refused(samples)
    assert "s.nc is not a forecast file" in err and "samples file" in err

    nan = truth[None, :3].copy()
    nan[0, 1, 2][mask > 0.5] = np.nan
    err = refused(_write(tmp_path / "nan.nc", nan, states, REFERENCE, valid[:3]))
    assert "NaN or infinite values of damage in ocean cells at 2010-02-03T00:00:00" in err

    assert "drop --samples" in refused(good, "--samples", str(samples))
    assert "--climatology-window must be 0 to 181 days, got -1" in refused(good, "--climatology-window", "-1")
    assert "nothing.nc does not exist" in refused(tmp_path / "nothing.nc")

    other = tmp_path / "other-splits"  # the same states, other splits
    shutil.copytree(data, other)
    manifest = json.loads((other / "manifest.json").read_text())
    for splits, expected in (
        ({"test": SPLITS["test"]}, "no split named 'train'"),
        ({"train": ["2009-06-01", "2009-06-30"]}, "no state within 15 days of day of year 33"),
    ):
        (other / "manifest.json").write_text(json.dumps({**manifest, "splits": splits}))
        assert main(["evaluate", "--forecast", str(good), "--data", str(other), "--out", out]) == 2
        assert expected in _one_line_error(capsys)
    assert not Path(out).exists()  # nothing was written by a refused evaluation
