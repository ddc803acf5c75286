"""The synthetic neXtSIM-like generator: bounds, plateaus, seasonality, determinism, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpc_seaice.cli import main
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.data.format.verify import verify_dataset
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.data.synth.generate import generate, summarize, synth_times
from hpc_seaice.data.synth.model import SyntheticArctic


@pytest.fixture(scope="module")
def all_samples(tiny_dataset_64):
    ds = ShardedDataset(tiny_dataset_64, split=None, normalize=False)
    x = np.stack([ds.raw(i) for i in range(len(ds))])
    return ds, x


def test_bounds_plateaus_and_land(all_samples):
    ds, x = all_samples
    ocean = ds.static.mask > 0.5
    sit, sic, damage, siu, siv = (x[:, k] for k in range(5))
    assert np.isfinite(x).all()
    assert (x[:, :, ~ocean] == 0).all(), "land must be 0 in every stored field"
    assert sic.min() >= 0 and sic.max() <= 1
    assert damage.min() >= 0 and damage.max() <= 1
    assert sit.min() >= 0
    icy = sic[:, ocean]
    # Plateaus: exact 0 (open water) and exact 1 (pack) are common, with a MIZ in between.
    assert (icy == 0).mean() > 0.1
    assert (icy == 1).mean() > 0.05
    assert ((icy >= 0.15) & (icy <= 0.8)).mean() > 0.01
    no_ice = sic == 0
    assert (sit[no_ice] == 0).all() and (damage[no_ice] == 0).all()
    assert (siu[no_ice] == 0).all() and (siv[no_ice] == 0).all()
    assert (sit[(sic > 0)] > 0).all()
    assert np.abs(siu[sic > 0]).mean() > 0.005, "ice should drift"
    assert (damage == 1).any(), "LKF cores reach damage 1"


def test_seasonal_cycle_march_extent_exceeds_september():
    times = synth_times("2009-01-01", "2010-12-31", "7D")
    model = SyntheticArctic(64, seed=3, dt_days=7.0)
    states = np.concatenate([model.states(times[i : i + 16]) for i in range(0, len(times), 16)])
    ocean = model.geometry.ocean
    extent = (states[:, 1][:, ocean] >= 0.15).mean(axis=1)
    month = times.astype("datetime64[M]").astype(int) % 12 + 1
    assert extent[month == 3].mean() > extent[month == 9].mean() + 0.2
    # thickest ice sits in the pack near the northern coasts, far above the open-water mean
    assert states[:, 0][:, ocean].max() > 2.0


def test_consecutive_steps_are_correlated():
    times = synth_times("2009-01-01", "2009-01-10", "6h")
    model = SyntheticArctic(64, seed=0, dt_days=0.25)
    x = model.states(times)
    ocean = model.geometry.ocean
    for k in (3, 2):  # siu, damage
        f = x[:, k][:, ocean]
        near = np.mean([np.corrcoef(f[i], f[i + 1])[0, 1] for i in range(len(f) - 1)])
        far = np.corrcoef(f[0], f[-1])[0, 1]
        assert near > 0.7 and near > far + 0.2, (k, near, far)


def test_deterministic_from_seed(tmp_path):
    kwargs = dict(grid=32, start="2009-01-01", end="2018-12-31", freq="120D", shard_size=16, progress=False)
    a = generate(tmp_path / "a", seed=5, **kwargs)
    b = generate(tmp_path / "b", seed=5, **kwargs)
    c = generate(tmp_path / "c", seed=6, **kwargs)
    assert [s.sha256 for s in a.shards] == [s.sha256 for s in b.shards]
    assert [s.sha256 for s in a.shards] != [s.sha256 for s in c.shards]
    assert np.array_equal(read_static(tmp_path / "a").mask, read_static(tmp_path / "b").mask)


def test_generated_set_verifies_and_summarizes(tiny_dataset):
    verify_dataset(tiny_dataset)
    manifest = read_manifest(tiny_dataset)
    assert manifest.variables == ["sit", "sic", "damage", "siu", "siv"]
    assert manifest.upper[0] == float("inf")
    assert json.loads((tiny_dataset / "manifest.json").read_text())["upper"][0] == "inf"
    text = summarize(tiny_dataset)
    for word in ("train 41", "validation 5", "test 5", "ocean fraction", "sit", "siv", "at upper", "MB"):
        assert word in text


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["data", "synth", "--out", str(out), "--grid", "32", "--freq", "90D", "--shard-size", "10"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "samples per split" in printed and "ocean fraction" in printed
    verify_dataset(out)
    # refuses to overwrite without --overwrite, one line naming the folder
    rc = main(["data", "synth", "--out", str(out), "--grid", "32", "--freq", "90D"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(out) in err[0] and "--overwrite" in err[0]
    (out / "notes-keep.h5").write_text("a user's file")
    rc = main(["data", "synth", "--out", str(out), "--grid", "32", "--freq", "120D", "--overwrite"])
    assert rc == 0 and (out / "notes-keep.h5").exists()
    assert read_manifest(out).num_samples == 31 and len(list(out.glob("shard-*.h5"))) == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--start", "2017-01-01"], "split train"),
        (["--freq", "soon"], "--freq"),
        (["--grid", "8"], "--grid"),
        (["--grid", "48"], "--grid"),
        (["--grid", "0"], "--grid"),
        (["--grid", "100"], "--grid"),
        (["--grid", "1024"], "--grid"),
        (["--start", "2018-01-01", "--end", "2009-12-31"], "before --start"),
        (["--start", "2009-02-30"], "ISO dates"),
        (["--freq", "0h"], "--freq"),
        (["--freq", "1ms"], "at least 1 s"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_cli_synth_bad_arguments(tmp_path, capsys, args, needle):
    rc = main(["data", "synth", "--out", str(tmp_path / "x"), "--grid", "32", "--freq", "30D", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_static_has_true_cell_sizes_and_the_grid(tiny_dataset, tiny_dataset_64, tiny_dataset_copy):
    from hpc_seaice.data.geo.grid import Grid, grid_from_attrs
    from hpc_seaice.data.stats.normalisation import compute_stats

    areas = {}
    for root, n in ((tiny_dataset, 32), (tiny_dataset_64, 64)):
        static = read_static(root)
        dx, dy, area = Grid(n).spacing()
        assert np.allclose(static.dx, dx) and np.allclose(static.dy, dy) and np.allclose(static.cell_area, area)
        assert 0.9 * 12e3 * 512 / n < static.dx.mean() < 1.1 * 12e3 * 512 / n  # 192 km and 96 km cells
        x, y = grid_from_attrs(static.attrs, static.mask.shape)
        assert np.allclose(x, Grid(n).x)
        areas[n] = float((static.cell_area * static.mask).sum())
    # the same domain at both resolutions: ocean areas agree within the coastline's coarsening
    assert abs(areas[32] / areas[64] - 1.0) < 0.1
    # recomputing the statistics keeps the cell sizes
    compute_stats(tiny_dataset_copy, progress=False)
    assert read_static(tiny_dataset_copy).cell_area is not None


def test_static_without_cell_sizes_reads_none(tmp_path):
    from hpc_seaice.data.format.static import write_static

    write_static(tmp_path, np.ones((4, 4)), np.zeros((4, 4)), np.zeros((4, 4)))
    s = read_static(tmp_path)
    assert s.cell_area is None and s.dx is None and s.dy is None
    with pytest.raises(ValueError, match="cell_area"):
        write_static(tmp_path, np.ones((4, 4)), np.zeros((4, 4)), np.zeros((4, 4)), cell_area=np.ones((3, 3)))


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_cli_synth_output_that_cannot_be_a_folder(tmp_path, capsys, where):
    """An --out that is a file, or lies below a file: one line naming it, exit 2, no traceback."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a user's file")
    out = blocker if where == "file" else blocker / "set"
    rc = main(["data", "synth", "--out", str(out), "--grid", "32", "--freq", "90D"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(out) in err[0], err
    assert blocker.read_text() == "a user's file"


def test_trajectory_does_not_depend_on_how_it_is_cut_into_calls():
    """Same seed, same states, whether drawn as one block or as several (the writer's block
    length depends on the grid; tests and tools call with other lengths)."""
    times = synth_times("2009-01-01", "2009-01-08", "1D")
    whole = SyntheticArctic(32, seed=1, dt_days=1.0).states(times)
    model = SyntheticArctic(32, seed=1, dt_days=1.0)
    parts = np.concatenate([model.states(times[:3]), model.states(times[3:4]), model.states(times[4:])])
    assert np.allclose(whole, parts, rtol=0, atol=1e-6)
    other = SyntheticArctic(32, seed=2, dt_days=1.0).states(times)
    assert not np.allclose(whole, other, atol=1e-3)


def test_a_set_too_large_for_the_disk_is_refused_before_its_time_axis_is_built(tmp_path):
    """A step of seconds over ten years: one line about the disk, without allocating the 16 M
    time stamps (and their split masks) first, and without creating the folder."""
    import tracemalloc

    from hpc_seaice.errors import UserError

    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="GB"):
            generate(tmp_path / "big", grid=512, freq="20s", progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6, peak
    assert not (tmp_path / "big").exists()
