"""`hpc-seaice evaluate` end to end on tiny fake samples against a tiny reference data set.

The reference data set is written with the data layer's own writer; the expected scores are
recomputed here independently (states read straight from the shard files with h5py, scores
from :func:`crps_ensemble` on full arrays) and compared with ``metrics.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import tiny_autoencoder_config, tiny_diffusion_config

from hpc_seaice.cli import main
from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.manifest import Layout, in_split, write_manifest
from hpc_seaice.data.format.samples_file import samples_dataset, write_samples
from hpc_seaice.data.format.shards import ShardWriter
from hpc_seaice.data.format.static import write_static
from hpc_seaice.data.format.variables import BOUNDS, VARIABLES
from hpc_seaice.evaluation.evaluate import select_states
from hpc_seaice.evaluation.metrics import crps_ensemble, masked_mean, rmse
from hpc_seaice.evaluation.spectra import isotropic_psd, log_ratio
from hpc_seaice.train.trainer import run_training

GRID = 24
SPACING_M = 300_000.0  # polar stereographic grid spacing (true at the pole): cell areas vary by 30 %
R_EARTH = 6_371_000.0


def _polar_stereographic(n: int = GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lat/lon of a polar stereographic grid (pole at the centre) and its analytic cell areas (m^2).

    Scale factor k = 2 / (1 + sin lat): a grid step of SPACING_M is SPACING_M / k on the ground.
    """
    c = (np.arange(n) - (n - 1) / 2) * SPACING_M
    y, x = np.meshgrid(c, c, indexing="ij")
    r = np.hypot(x, y)
    lat = 90.0 - 2.0 * np.degrees(np.arctan(r / (2.0 * R_EARTH)))
    lon = np.degrees(np.arctan2(y, x))
    area = (SPACING_M * (1.0 + np.sin(np.radians(lat))) / 2.0) ** 2
    return lat, lon, area


def _mask(n: int = GRID) -> np.ndarray:
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    mask = np.ones((n, n), dtype=np.float32)
    mask[(y + x) < 6] = 0  # a land corner
    mask[n - 4 :, n - 5 :] = 0  # and another one
    return mask


def _states(rng: np.random.Generator, num: int, mask: np.ndarray) -> np.ndarray:
    n = mask.shape[0]
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    out = np.zeros((num, len(VARIABLES), n, n), dtype=np.float32)
    for i in range(num):
        edge = 8 + 6 * np.sin(2 * np.pi * i / num) + rng.normal(0, 1)
        sic = np.clip((edge - x) / 5.0 + 0.3 * rng.normal(size=(n, n)), 0, 1)  # exact 0/1 plateaus
        out[i, 0] = np.clip(2.0 * sic + 0.2 * rng.normal(size=(n, n)), 0, None)
        out[i, 1] = sic
        out[i, 2] = np.clip(rng.uniform(-0.2, 1.2, size=(n, n)), 0, 1)
        out[i, 3] = 0.1 * np.sin(2 * np.pi * y / n + i) + 0.02 * rng.normal(size=(n, n))
        out[i, 4] = 0.1 * np.cos(2 * np.pi * x / n - i) + 0.02 * rng.normal(size=(n, n))
    return out * mask


TIMES = np.concatenate(
    [
        np.arange("2016-12-31T00", "2017-01-01T00", 6, dtype="datetime64[h]"),  # train: 4
        np.arange("2017-06-01T00", "2017-06-03T00", 6, dtype="datetime64[h]"),  # validation (the floor): 8
        np.arange("2018-01-01T00", "2018-01-04T00", 6, dtype="datetime64[h]"),  # test: 12
    ]
).astype("datetime64[s]")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("ref") / "data"
    mask = _mask()
    fields = _states(np.random.default_rng(0), len(TIMES), mask)
    lat, lon = _write_reference(root, fields, mask)
    return root, mask, lat, lon


def _write_reference(root: Path, fields: np.ndarray, mask: np.ndarray, times: np.ndarray = TIMES):
    writer = ShardWriter(root, Layout.fields((GRID, GRID)), 5)
    writer.write(fields, times)
    writer.close()
    write_manifest(root, writer.build_manifest())
    lat, lon, _ = _polar_stereographic()
    write_static(root, mask, lat, lon, mean=fields.mean(axis=(0, 2, 3)), std=fields.std(axis=(0, 2, 3)) + 0.1)
    return lat, lon


def _test_states(root: Path, split: str = "test") -> np.ndarray:
    """A split (default test) read straight from the shards (independent of ShardedDataset)."""
    manifest = json.loads((root / "manifest.json").read_text())
    states, times = [], []
    for shard in manifest["shards"]:
        with h5py.File(root / shard["file"], "r", locking=False) as f:
            states.append(f["fields"][()])
            times.append(f["time"][()].astype("datetime64[s]"))
    states, times = np.concatenate(states), np.concatenate(times)
    order = np.argsort(times)
    keep = in_split(times[order], manifest["splits"][split])
    return states[order][keep].astype(np.float64)


@pytest.fixture(scope="module")
def samples(reference, tmp_path_factory) -> tuple[Path, Path]:
    root, mask, lat, lon = reference
    folder = tmp_path_factory.mktemp("samples")
    rng = np.random.default_rng(1)
    good = _states(rng, 8, mask)
    raw = good.copy()
    raw[:, 1] += np.where(mask > 0, rng.normal(0, 0.05, size=raw[:, 1].shape), 0)  # leaves [0, 1]
    clipped = good.copy()
    clipped[:, 1] = np.clip(raw[:, 1], 0, 1) * mask
    a = write_samples(
        folder / "data_space.nc",
        samples_dataset(
            clipped,
            mask,
            lat,
            lon,
            {"run": "runs/a", "checkpoint_step": 10, "sampler": "heun", "steps": 20, "seed": 0},
            raw=raw,
        ),
    )
    # a smooth model: every sample is a blurred state
    smooth = good.copy()
    for _ in range(3):
        smooth = 0.5 * smooth + 0.125 * (
            np.roll(smooth, 1, -1) + np.roll(smooth, -1, -1) + np.roll(smooth, 1, -2) + np.roll(smooth, -1, -2)
        )
    b = write_samples(
        folder / "ldm.nc", samples_dataset(smooth * mask, mask, lat, lon, {"model": "Gaussian LDM", "seed": 1})
    )
    return a, b


def test_evaluate_end_to_end(reference, samples, tmp_path, capsys):
    root, mask, _, _ = reference
    a, b = samples
    out = tmp_path / "eval"
    rc = main(["evaluate", "--samples", str(a), str(b), "--data", str(root), "--out", str(out), "--max-states", "7"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    figures = ("maps.png", "spectra_sit.png", "spectra_all.png", "calibration.png", "miz_area.png", "aggregates.png")
    for name in (*figures, "deformation_scaling.png"):
        assert (out / name).stat().st_size > 5000, name
    report = (out / "report.md").read_text()
    assert "data_space" in report and "Gaussian LDM" in report
    assert "![" in report and "(spectra_sit.png)" in report and "(maps.png)" in report

    assert set(metrics["models"]) == {"data_space", "Gaussian LDM"}
    assert metrics["num_states"] == 7 and metrics["split"] == "test"

    # Independent recomputation; cell areas from the projection's analytic scale factor.
    area_km2 = _polar_stereographic()[2] / 1e6
    states = _test_states(root)
    assert len(states) == 12
    states = states[select_states(12, 7)]
    ocean = mask > 0.5
    for name, path in (("data_space", a), ("Gaussian LDM", b)):
        import xarray as xr

        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ens = np.stack([ds[v].values for v in VARIABLES], axis=1).astype(np.float64)
            raw = np.stack([ds[v + "_raw"].values if v + "_raw" in ds else ds[v].values for v in VARIABLES], axis=1)
        got = metrics["models"][name]
        for c, var in enumerate(VARIABLES):
            crps = np.mean([masked_mean(crps_ensemble(ens[:, c], s[c]), mask) for s in states])
            crps_fair = np.mean([masked_mean(crps_ensemble(ens[:, c], s[c], fair=True), mask) for s in states])
            assert got["variables"][var]["crps"] == pytest.approx(crps, rel=1e-5, abs=1e-9), (name, var)
            assert got["variables"][var]["crps_fair"] == pytest.approx(crps_fair, rel=1e-5, abs=1e-9)
            assert got["variables"][var]["mean_rmse"] == pytest.approx(
                float(rmse(ens[:, c].mean(0), states[:, c].mean(0), mask)), rel=1e-6
            )
            assert got["variables"][var]["std_bias"] == pytest.approx(
                float(masked_mean(ens[:, c].std(0) - states[:, c].std(0), mask)), rel=1e-6, abs=1e-12
            )
            lo, hi = BOUNDS[var]
            frac = (~((raw[:, c] >= lo) & (raw[:, c] <= hi)))[:, ocean].mean()
            assert got["variables"][var]["out_of_bounds"] == pytest.approx(frac)
        miz = [(((e[1] >= 0.15) & (e[1] <= 0.8) & ocean) * area_km2).sum() for e in ens]
        assert got["miz_area_km2"]["mean"] == pytest.approx(np.mean(miz), rel=5e-3)
        p_test = (states[:, 1] >= 0.15).mean(0)[ocean]
        bins = np.minimum((p_test * 20 + 1e-9).astype(int), 19)
        counts = np.bincount(bins, minlength=20)
        assert got["cover_calibration"]["counts"] == counts.tolist()
        p_gen = (ens[:, 1] >= 0.15).mean(0)[ocean]
        gaps = [abs(p_gen[bins == b].mean() - p_test[bins == b].mean()) for b in range(20) if (bins == b).any()]
        assert got["cover_calibration"]["unweighted_error"] == pytest.approx(np.mean(gaps), rel=1e-9)
        partial = (p_test > 0) & (p_test < 1)
        assert got["cover_calibration"]["partial_error"] == pytest.approx(
            np.abs(p_gen - p_test)[partial].mean(), rel=1e-9
        )
        for key, var, value in (("sit=0", 0, 0.0), ("sic=0", 1, 0.0), ("sic=1", 1, 1.0), ("damage=1", 2, 1.0)):
            assert got["plateau_shares"][key] == pytest.approx((ens[:, var][:, ocean] == value).mean()), (name, key)
        assert set(got["psd_sit_band_log10_ratio"]) == {"large_gt400km", "meso_100_400km", "small_lt100km"}
    for key, var, value in (("sit=0", 0, 0.0), ("sic=0", 1, 0.0), ("sic=1", 1, 1.0), ("damage=1", 2, 1.0)):
        share = (states[:, var][:, ocean] == value).mean()
        assert metrics["reference"]["plateau_shares"][key] == pytest.approx(share), key
    assert metrics["reference"]["plateau_shares"]["sic=0"] > 0.1  # the fixture has real plateaus
    assert metrics["step_sweep"] == {}  # two different runs: nothing to line up
    assert metrics["models"]["data_space"]["out_of_bounds_source"] == "raw"
    assert metrics["models"]["data_space"]["variables"]["sic"]["out_of_bounds"] > 0.01
    assert metrics["models"]["Gaussian LDM"]["variables"]["sic"]["out_of_bounds"] == 0
    # The blurred model has less small-scale energy: a negative spectral log-ratio.
    assert (
        metrics["models"]["Gaussian LDM"]["psd_sit_log10_ratio"]
        < metrics["models"]["data_space"]["psd_sit_log10_ratio"]
    )
    ref_miz = [(((s[1] >= 0.15) & (s[1] <= 0.8) & ocean) * area_km2).sum() for s in states]
    assert metrics["reference"]["miz_area_km2_values"] == pytest.approx(ref_miz, rel=5e-3)
    equal_cells = [((s[1] >= 0.15) & (s[1] <= 0.8) & ocean).sum() * area_km2[ocean].mean() for s in states]
    assert np.max(np.abs(np.divide(equal_cells, ref_miz) - 1)) > 0.02  # equal cells would fail the check above
    assert metrics["geometry"]["source"] == "lat/lon"
    _check_floor(metrics, root, states, mask, report)
    box = metrics["spectrum"]["box"]
    box_spacing = np.sqrt(area_km2[box["y0"] : box["y1"], box["x0"] : box["x1"]]).mean()
    assert metrics["dx_km"] == pytest.approx(box_spacing, rel=1e-3)
    assert area_km2.max() / area_km2.min() > 1.25  # the test would see a constant-area shortcut


def _check_floor(metrics: dict, root: Path, states: np.ndarray, mask: np.ndarray, report: str) -> None:
    """The floor is the 8 validation states (both models have 8 samples) scored like a samples file."""
    floor = metrics["floor"]
    validation = _test_states(root, "validation")
    assert floor["num_samples"] == 8 == len(validation) and floor["attrs"]["split"] == "validation"
    for c, var in enumerate(VARIABLES):
        crps = np.mean([masked_mean(crps_ensemble(validation[:, c], s[c]), mask) for s in states])
        assert floor["variables"][var]["crps"] == pytest.approx(crps, rel=1e-5, abs=1e-9), var
        for source in (floor, *metrics["models"].values()):
            i = source["intervals"][f"crps/{var}"]
            assert i["estimate"] == pytest.approx(source["variables"][var]["crps"], rel=1e-9)
            assert i["low"] < i["high"]
    # every table has the floor row, before the models
    assert report.count("| floor (validation) |") >= 8
    assert floor["aggregates"]["extent"]["values"] and "variogram/all" in floor["intervals"]
    assert "deformation" in floor and "deformation" in metrics["reference"] and "consistency" in floor


def test_censored_out_of_bounds_is_na_and_step_sweep_lines_up_steps(reference, tmp_path):
    root, mask, lat, lon = reference
    rng = np.random.default_rng(3)
    good = _states(rng, 4, mask)
    raw = good.copy()
    raw[:, 1] = np.where(good[:, 1] >= 1, 1.3, np.where(good[:, 1] <= 0, -0.4, good[:, 1]))  # plateaus encoded
    files = []
    for steps in (40, 10):
        attrs = {"run": "/x/runs/latent", "checkpoint_step": 7, "steps": steps, "decoder": "censored"}
        attrs["network_evaluations_per_sample"] = 2 * steps - 1
        files.append(
            str(write_samples(tmp_path / f"s{steps}.nc", samples_dataset(good, mask, lat, lon, attrs, raw=raw)))
        )
    out = tmp_path / "eval"
    assert main(["evaluate", "--samples", *files, "--data", str(root), "--out", str(out), "--max-states", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for model in metrics["models"].values():
        assert model["out_of_bounds_source"] == "n/a (censored decoder)"
        assert all(s["out_of_bounds"] is None for s in model["variables"].values())
    (key, rows) = next(iter(metrics["step_sweep"].items()))
    assert key == "latent @ step 7" and [r["steps"] for r in rows] == [10, 40]
    assert [r["network_evaluations"] for r in rows] == [19, 79]
    assert rows[0]["crps"]["sic"] == pytest.approx(metrics["models"]["s10"]["variables"]["sic"]["crps"])
    report = (out / "report.md").read_text()
    assert "Heun-step sweep" in report and "| sic (1) | s10 |" in report
    rows = [line.split("|") for line in report.splitlines() if line.startswith("| sic (1) |")]
    assert [r[-2].strip() for r in rows if "floor" not in r[2]] == ["n/a", "n/a"]
    assert [r[-2].strip() for r in rows if "floor" in r[2]] == ["0"]  # validation states stay in bounds


def test_step_sweep_samples_one_run_at_15_30_60_steps_with_the_same_noise(reference, diffusion_run, tmp_path):
    """--step-sweep on a real (one-step) data-space diffusion run."""
    import xarray as xr

    root = reference[0]
    out = tmp_path / "eval"
    argv = ["evaluate", "--step-sweep", str(diffusion_run), "--sweep-samples", "2", "--data", str(root)]
    assert main([*argv, "--out", str(out), "--max-states", "3"]) == 0
    files = sorted((out / "step_sweep").glob("*.nc"))
    assert [f.name for f in files] == ["ddm-steps015.nc", "ddm-steps030.nc", "ddm-steps060.nc"]
    fields = []
    for f in files:
        with xr.open_dataset(f, engine="h5netcdf") as ds:
            assert ds.attrs["seed"] == 0 and ds.sizes["sample"] == 2
            fields.append(ds["sit_raw"].values.astype(np.float64))
    # the same noise: more steps converge to one solution (60 is closer to 30 than 30 to 15)
    assert np.abs(fields[2] - fields[1]).max() < np.abs(fields[1] - fields[0]).max()
    metrics = metrics_of(out)
    rows = metrics["step_sweep"]["ddm @ step 1"]
    assert [r["steps"] for r in rows] == [15, 30, 60] and [r["network_evaluations"] for r in rows] == [29, 59, 119]
    assert [r["model"] for r in rows] == ["ddm (15 steps)", "ddm (30 steps)", "ddm (60 steps)"]
    assert rows[1]["crps"]["sit"] == pytest.approx(metrics["models"]["ddm (30 steps)"]["variables"]["sit"]["crps"])
    assert "Heun-step sweep" in (out / "report.md").read_text()
    assert main([*argv, "--out", str(out), "--sweep-samples", "1"]) == 2


def test_thresholds_treat_reference_and_samples_alike(tmp_path):
    """Samples that are the test states themselves, with sic exactly at the MIZ and cover bounds.

    float32(0.8) is 0.80000001 in float64: the reference (read as float64) and the samples
    (float32) must still count it the same way, so the two distributions are identical.
    """
    mask = _mask()
    fields = _states(np.random.default_rng(7), len(TIMES), mask)
    sic = fields[:, 1]
    sic[:, ::3, ::2] = np.float32(0.8)
    sic[:, 1::3, ::2] = np.float32(0.15)
    fields[:, 1] = sic * mask
    lat, lon = _write_reference(tmp_path / "data", fields, mask)
    test = fields[-12:]
    path = write_samples(tmp_path / "same.nc", samples_dataset(test, mask, lat, lon, {}))
    out = tmp_path / "eval"
    assert main(["evaluate", "--samples", str(path), "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    metrics = metrics_of(out)
    model = metrics["models"]["same"]
    assert model["miz_area_km2_values"] == pytest.approx(metrics["reference"]["miz_area_km2_values"], rel=1e-12)
    assert model["miz_area_wasserstein_km2"] == pytest.approx(0.0, abs=1e-6)
    assert model["cover_calibration"]["error"] == 0.0
    # the bound itself is inside the MIZ: every 0.8 and 0.15 cell of the first state counts
    area_km2 = _polar_stereographic()[2] / 1e6
    s0 = test[0, 1].astype(np.float64)
    inside = ((s0 >= 0.15 - 1e-6) & (s0 <= 0.8 + 1e-6) & (mask > 0.5)) * area_km2
    assert model["miz_area_km2_values"][0] == pytest.approx(inside.sum(), rel=5e-3)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs(reference, samples, tmp_path, capsys):
    root, mask, lat, lon = reference
    out = str(tmp_path / "eval")
    assert main(["evaluate", "--samples", str(tmp_path / "nope.nc"), "--data", str(root), "--out", out]) == 2
    assert "nope.nc does not exist" in _one_line_error(capsys)

    small = write_samples(
        tmp_path / "small.nc",
        samples_dataset(
            np.zeros((2, 5, 16, 16), np.float32), np.ones((16, 16)), np.zeros((16, 16)), np.zeros((16, 16)), {}
        ),
    )
    assert main(["evaluate", "--samples", str(small), "--data", str(root), "--out", out]) == 2
    err = _one_line_error(capsys)
    assert "grid mismatch" in err and "16x16" in err and f"{GRID}x{GRID}" in err

    other_mask = np.ones_like(mask)
    wrong = write_samples(
        tmp_path / "wrong.nc", samples_dataset(np.zeros((2, 5, GRID, GRID), np.float32), other_mask, lat, lon, {})
    )
    assert main(["evaluate", "--samples", str(wrong), "--data", str(root), "--out", out]) == 2
    assert "land mask mismatch" in _one_line_error(capsys)

    shifted = write_samples(
        tmp_path / "shifted.nc", samples_dataset(np.zeros((2, 5, GRID, GRID), np.float32), mask, lat - 1, lon, {})
    )
    assert main(["evaluate", "--samples", str(shifted), "--data", str(root), "--out", out]) == 2
    err = _one_line_error(capsys)
    assert "lat/lon mismatch" in err and "111 km" in err

    assert main(["evaluate", "--data", str(root), "--out", out]) == 2
    assert "nothing to evaluate" in _one_line_error(capsys)
    assert main(["evaluate", "--samples", str(samples[0]), "--data", str(tmp_path / "nodata"), "--out", out]) == 2
    assert "nodata" in _one_line_error(capsys)

    import shutil

    bad = tmp_path / "bad-geometry"
    shutil.copytree(root, bad)
    with h5py.File(bad / "static.h5", "a") as f:  # a static file written by another tool, wrong shape
        if "cell_area" in f:
            del f["cell_area"]
        f.create_dataset("cell_area", data=np.ones((3, 3)))
    assert main(["evaluate", "--samples", str(samples[0]), "--data", str(bad), "--out", out]) == 2
    err = _one_line_error(capsys)
    assert "static.h5" in err and "cell_area" in err

    # bad values that used to end in a traceback
    a = str(samples[0])
    assert main(["evaluate", "--samples", a, "--data", str(root), "--out", out, "--dx-km", "inf"]) == 2
    assert "--dx-km must be positive and finite" in _one_line_error(capsys)
    assert main(["evaluate", "--samples", a, "--data", str(root), "--out", out, "--max-states", "-1"]) == 2
    assert "--max-states must be >= 0" in _one_line_error(capsys)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert main(["evaluate", "--samples", a, "--data", str(root), "--out", str(a_file)]) == 2
    assert "is a file" in _one_line_error(capsys)


@pytest.mark.parametrize("where", ["nowhere", "border"])
def test_no_ocean_in_the_spectrum_box_is_a_one_line_error(reference, tmp_path, capsys, where):
    """An all-land grid, or ocean only along the border (no centred box is mostly ocean)."""
    import shutil

    from hpc_seaice.data.format.static import read_static

    root, _, lat, lon = reference
    data = tmp_path / "data"
    shutil.copytree(root, data)
    st = read_static(data)
    mask = np.zeros_like(st.mask)
    if where == "border":
        mask[:3] = 1
    write_static(data, mask, st.lat, st.lon, st.mean, st.std)
    path = write_samples(
        tmp_path / "s.nc", samples_dataset(np.zeros((2, 5, GRID, GRID), np.float32), mask, lat, lon, {})
    )
    assert main(["evaluate", "--samples", str(path), "--data", str(data), "--out", str(tmp_path / "eval")]) == 2
    err = _one_line_error(capsys)
    assert "static.h5" in err and ("no ocean cell" in err)
    if where == "border":
        assert "spectrum box (y 6:18, x 6:18)" in err


def test_a_box_that_is_not_mostly_ocean_is_a_one_line_warning(reference, tmp_path, capsys):
    import shutil

    from hpc_seaice.data.format.static import read_static

    root, mask, lat, lon = reference
    data = tmp_path / "data"
    shutil.copytree(root, data)
    st = read_static(data)
    holes = mask.copy()
    holes[::2, ::2] = 0  # a quarter of every square is land: no centred box is 90 % ocean
    write_static(data, holes, st.lat, st.lon, st.mean, st.std)
    states = _states(np.random.default_rng(5), 2, holes)
    path = write_samples(tmp_path / "s.nc", samples_dataset(states, holes, lat, lon, {}))
    assert main(["evaluate", "--samples", str(path), "--data", str(data), "--out", str(tmp_path / "e")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no centred square is 90% ocean" in warnings[0], warnings


def _trained_run(reference, tmp_path_factory, tiny_config, name: str, steps: int) -> Path:
    """A real run of ``tiny_config`` trained ``steps`` steps (batch 2) on the reference data set,
    with a checkpoint at the last step."""
    run_dir = tmp_path_factory.mktemp("runs") / name
    train = {"max_steps": steps, "checkpoint_every": steps, "batch_size": 2}
    assert run_training(config_from_dict(tiny_config(reference[0], run_dir, train=train))) == 0
    return run_dir


@pytest.fixture(scope="module")
def autoencoder_run(reference, tmp_path_factory) -> Path:
    """A real autoencoder run: two training steps of the tiny VAE on the reference data set."""
    return _trained_run(reference, tmp_path_factory, tiny_autoencoder_config, "vae", steps=2)


@pytest.fixture(scope="module")
def diffusion_run(reference, tmp_path_factory) -> Path:
    """A real data-space diffusion run (one training step of the tiny U-Net)."""
    return _trained_run(reference, tmp_path_factory, tiny_diffusion_config, "ddm", steps=1)


def test_evaluate_reconstruction_of_a_trained_autoencoder(reference, autoencoder_run, tmp_path):
    """--reconstruct with a real (two-step) autoencoder run, scored against an independent decode."""
    import torch

    from hpc_seaice.inference.loading import load_inference_model

    root, mask, _, _ = reference
    out = tmp_path / "eval"
    argv = ["evaluate", "--reconstruct", str(autoencoder_run), "--data", str(root), "--out", str(out)]
    assert main([*argv, "--max-states", "4"]) == 0
    rec = json.loads((out / "metrics.json").read_text())["reconstructions"]["vae (reconstruction)"]
    assert rec["step"] == 2

    vae = load_inference_model(autoencoder_run).model
    states = _test_states(root)[select_states(12, 4)]
    m = torch.from_numpy(mask)
    with torch.no_grad():
        x = torch.from_numpy(states.astype(np.float32))
        pred = vae.decode(vae.encode(vae.normalize(x) * m)[0], mask=m).numpy().astype(np.float64)
    for c, var in enumerate(VARIABLES):
        expect = np.sqrt(np.mean(masked_mean((pred[:, c] - states[:, c]) ** 2, mask)))
        assert rec["variables"][var]["rmse"] == pytest.approx(expect, rel=1e-4)
        assert rec["variables"][var]["bias"] == pytest.approx(
            np.mean(masked_mean(pred[:, c] - states[:, c], mask)), rel=1e-4, abs=1e-7
        )
    ref_psd = isotropic_psd(states[:, 0], mask=mask, box=_box(metrics_of(out)), dx_km=metrics_of(out)["dx_km"])
    rec_psd = isotropic_psd(pred[:, 0], mask=mask, box=_box(metrics_of(out)), dx_km=metrics_of(out)["dx_km"])
    assert rec["psd_sit"] == pytest.approx(rec_psd.psd.tolist(), rel=1e-4)
    assert rec["psd_sit_log10_ratio"] == pytest.approx(log_ratio(rec_psd.psd, ref_psd.psd), abs=1e-4)
    assert (out / "maps.png").is_file() and (out / "spectra_sit.png").is_file()
    assert "Autoencoder reconstructions" in (out / "report.md").read_text()


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _box(metrics: dict) -> tuple[slice, slice]:
    b = metrics["spectrum"]["box"]
    return slice(b["y0"], b["y1"]), slice(b["x0"], b["x1"])


def test_runs_of_the_wrong_kind_are_one_line_errors(reference, autoencoder_run, diffusion_run, tmp_path, capsys):
    root = str(reference[0])
    out = str(tmp_path / "eval")
    assert main(["evaluate", "--reconstruct", str(diffusion_run), "--data", root, "--out", out]) == 2
    assert "has no autoencoder" in _one_line_error(capsys)
    assert main(["evaluate", "--step-sweep", str(autoencoder_run), "--data", root, "--out", out]) == 2
    assert "sampling needs a diffusion run" in _one_line_error(capsys)
