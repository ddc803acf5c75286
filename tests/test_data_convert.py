"""Converting neXtSIM-like NetCDF and zarr (written here with xarray) into sharded data sets."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hpc_seaice import outputs
from hpc_seaice.cli import main
from hpc_seaice.data.convert.pipeline import convert, parse_crop, parse_splits
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.data.format.verify import verify_dataset
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.errors import UserError

PAD_Y, PAD_X = (3, 2), (1, 4)  # the source grid is larger than the 32 x 32 target
CROP = f"{PAD_Y[0]}:{PAD_Y[0] + 32},{PAD_X[0]}:{PAD_X[0] + 32}"
NAMES = ["sit", "siconc", "sid", "vxsi", "vysi"]


@pytest.fixture(scope="module")
def source(tiny_dataset):
    """neXtSIM-like output: NaN on land (and in the padding), renamed variables, 2-D lat/lon."""
    ds = ShardedDataset(tiny_dataset, split=None, normalize=False)
    x = np.stack([ds.raw(i) for i in range(len(ds))])
    ocean = ds.static.mask > 0.5
    x[:, :, ~ocean] = np.nan
    x = np.pad(x, ((0, 0), (0, 0), PAD_Y, PAD_X), constant_values=np.nan)
    lat = np.pad(ds.static.lat, (PAD_Y, PAD_X), mode="edge")
    lon = np.pad(ds.static.lon, (PAD_Y, PAD_X), mode="edge")
    data = {
        n: (("time", "y", "x"), x[:, k], {"units": u})
        for k, (n, u) in enumerate(zip(NAMES, ["m", "1", "1", "m/s", "m/s"]))
    }
    xds = xr.Dataset(
        data,
        coords={
            "time": ds.times.astype("datetime64[ns]"),
            "latitude": (("y", "x"), lat),
            "longitude": (("y", "x"), lon),
        },
    )
    return xds, x, ds


def _write_two_files(xds, tmp_path):
    a, b = tmp_path / "Moorings_a.nc", tmp_path / "Moorings_b.nc"
    xds.isel(time=slice(20, None)).to_netcdf(b, engine="h5netcdf")  # written out of order on purpose
    xds.isel(time=slice(0, 20)).to_netcdf(a, engine="h5netcdf")
    return a, b


def _check_converted(out, x, ds):
    verify_dataset(out)
    conv = ShardedDataset(out, split=None, normalize=False)
    assert np.array_equal(conv.times, ds.times)
    assert np.array_equal(conv.static.mask, ds.static.mask)  # ocean = sit finite at all times
    assert np.allclose(conv.static.lat, ds.static.lat) and np.allclose(conv.static.lon, ds.static.lon)
    for i in (0, 19, 20, len(conv) - 1):
        assert np.array_equal(conv.raw(i), ds.raw(i))  # cropped, land 0
    assert np.allclose(read_static(out).mean, ds.static.mean, rtol=1e-6)


def test_convert_netcdf_files_via_cli(source, tmp_path, capsys):
    xds, x, ds = source
    _write_two_files(xds, tmp_path)
    out = tmp_path / "out"
    rc = main(
        [
            "data", "convert", str(tmp_path / "Moorings_*.nc"), "--out", str(out),
            "--variables", "sit,siconc,sid,vxsi,vysi", "--crop", CROP, "--shard-size", "16",
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "samples per split: train 41, validation 5, test 5" in capsys.readouterr().out
    _check_converted(out, x, ds)
    m = read_manifest(out)
    assert m.source["variables"]["siv"] == "vysi" and "finite at all" in m.source["mask"]
    # The leading-PC std of the normalised train split is stored, as by data synth (SVD here).
    static = read_static(out)
    train = ShardedDataset(out, split="train", normalize=False)
    ocean = static.mask > 0.5
    rows = [((train.raw(i)[:, ocean] - static.mean[:, None]) / static.std[:, None]).ravel() for i in range(len(train))]
    states = np.stack(rows) - np.mean(rows, axis=0)
    expected = np.linalg.svd(states, compute_uv=False)[0] / np.sqrt(len(rows) - 1)
    assert static.pc1_std == pytest.approx(expected, rel=1e-3)


def test_convert_zarr(source, tmp_path):
    xds, x, ds = source
    store = tmp_path / "moorings.zarr"
    xds.to_zarr(store, consolidated=False)
    out = tmp_path / "out"
    convert([str(store)], out, NAMES, CROP, 16, progress=False)
    _check_converted(out, x, ds)


def test_convert_without_coordinates_uses_default_lat_lon(source, tmp_path):
    xds, _, _ = source
    path = tmp_path / "plain.nc"
    xds.drop_vars(["latitude", "longitude"]).to_netcdf(path, engine="h5netcdf")
    convert([str(path)], tmp_path / "o", NAMES, CROP, 64, progress=False)
    static = read_static(tmp_path / "o")
    assert np.isfinite(static.lat).all() and static.lat.max() > 85


def _run(capsys, *argv):
    rc = main(list(argv))
    return rc, [line for line in capsys.readouterr().err.strip().splitlines() if line]


def _convert_cli(capsys, path, out, *extra):
    """``hpc-seaice data convert PATH --out OUT --variables <the five> EXTRA``: (exit code, error lines)."""
    return _run(capsys, "data", "convert", str(path), "--out", str(out), "--variables", ",".join(NAMES), *extra)


def _refused(capsys, xds, path, *extra) -> str:
    """Write ``xds`` to ``path`` and convert it: exit code 2 and one error line naming the file; that line."""
    xds.to_netcdf(path, engine="h5netcdf")
    rc, err = _convert_cli(capsys, path, path.parent / f"{path.stem}-out", *extra)
    assert rc == 2 and len(err) == 1 and str(path) in err[0], err
    return err[0]


def _with_nan_in_ocean(xds, ds, time: int):
    """A copy of ``xds`` with one NaN in an ocean cell of vxsi at time index ``time``."""
    bad = xds.copy(deep=True)
    iy, ix = np.argwhere(ds.static.mask > 0.5)[0]
    bad["vxsi"][time, iy + PAD_Y[0], ix + PAD_X[0]] = np.nan
    return bad


def test_missing_variable_names_file_and_variable(source, tmp_path, capsys):
    xds, _, _ = source
    line = _refused(capsys, xds.drop_vars("sid"), tmp_path / "Moorings_2009.nc")
    assert "variable 'sid' not found" in line and "--variables" in line


def test_nan_in_ocean_cells_of_another_variable(source, tmp_path, capsys):
    xds, _, ds = source
    line = _refused(capsys, _with_nan_in_ocean(xds, ds, time=7), tmp_path / "m.nc", "--crop", CROP)
    assert "NaN in ocean cells of 'vxsi'" in line


def test_out_of_bounds_and_percent_units(source, tmp_path, capsys):
    xds, _, ds = source
    pct = xds.copy(deep=True)
    pct["siconc"] = pct["siconc"] * 100
    pct["siconc"].attrs["units"] = "%"
    path = tmp_path / "pct.nc"
    pct.to_netcdf(path, engine="h5netcdf")
    convert([str(path)], tmp_path / "o", NAMES, CROP, 64, progress=False)
    assert np.allclose(ShardedDataset(tmp_path / "o", split=None, normalize=False).raw(3), ds.raw(3), atol=1e-6)
    pct["siconc"].attrs["units"] = "1"
    assert "outside the physical bounds" in _refused(capsys, pct, tmp_path / "bad.nc", "--crop", CROP)


def test_argument_errors(source, tmp_path, capsys):
    xds, _, _ = source
    path = tmp_path / "m.nc"
    xds.isel(time=slice(0, 4)).to_netcdf(path, engine="h5netcdf")
    cases = [
        (["--crop", "0:99,0:10"], "--crop"),
        (["--variables", "sit,sic"], "--variables"),
        ([], "split validation"),  # 4 samples in 2009-2010 only
        (["--splits", "train=2009-01-01"], "--splits"),
    ]
    for extra, needle in cases:
        rc, err = _convert_cli(capsys, path, tmp_path / "o", *extra)
        assert rc == 2 and len(err) == 1 and needle in err[0], err
    rc, err = _run(capsys, "data", "convert", str(tmp_path / "nothing_*.nc"), "--out", str(tmp_path / "o"))
    assert rc == 2 and "nothing_*.nc: no file matches" in err[0]
    rc, err = _convert_cli(capsys, path, tmp_path / "o", "--splits", "train=2009-01-01..2009-12-31")
    assert rc == 0, err


def test_parsers():
    assert parse_crop("91:603,8:520", (603, 528)) == (slice(91, 603), slice(8, 520))
    assert parse_crop("", (5, 6)) == (slice(0, 5), slice(0, 6))
    with pytest.raises(UserError):
        parse_crop("1:2", (5, 5))
    assert parse_splits("train=2009-01-01..2009-06-30,test=2009-07-01..2009-12-31")["test"] == [
        "2009-07-01",
        "2009-12-31",
    ]
    with pytest.raises(UserError, match="train .* and validation .* overlap"):
        parse_splits("train=2016-01-01..2017-06-30,validation=2017-01-01..2017-12-31")
    with pytest.raises(UserError, match="overlap"):  # an inclusive end day overlaps the next start
        parse_splits("train=2009-01-01..2009-06-30,test=2009-06-30..2009-12-31")


def test_dimensions_are_mapped_by_name_and_cf_axis_not_by_position(source, tmp_path, capsys):
    """(time, x, y) converts to the same fields and keeps the file's own lat/lon; odd names need CF axes."""
    xds, x, ds = source
    transposed = tmp_path / "transposed.nc"
    xds.transpose("time", "x", "y").to_netcdf(transposed, engine="h5netcdf")
    convert([str(transposed)], tmp_path / "t", NAMES, CROP, 16, progress=False)
    _check_converted(tmp_path / "t", x, ds)

    renamed = xds.rename({"time": "when", "y": "row", "x": "col"})
    no_axes = tmp_path / "no_axes.nc"
    renamed.to_netcdf(no_axes, engine="h5netcdf")
    rc, err = _convert_cli(capsys, no_axes, tmp_path / "n")
    assert rc == 2 and len(err) == 1 and "cannot tell which is y and x" in err[0] and "CF axis" in err[0], err

    axes = renamed.assign_coords(
        row=("row", np.arange(renamed.sizes["row"]), {"axis": "Y"}),
        col=("col", np.arange(renamed.sizes["col"]), {"axis": "X"}),
    ).transpose("when", "col", "row")
    with_axes = tmp_path / "axes.nc"
    axes.to_netcdf(with_axes, engine="h5netcdf")
    convert([str(with_axes)], tmp_path / "a", NAMES, CROP, 16, progress=False)
    _check_converted(tmp_path / "a", x, ds)


def _with_calendar(xds, date_type):
    from datetime import timedelta

    dates = [date_type(2009, 1, 1) + timedelta(days=73 * i) for i in range(xds.sizes["time"])]
    return xds.assign_coords(time=dates), dates


def test_noleap_calendar_converts_and_360_day_is_refused(source, tmp_path, capsys):
    cftime = pytest.importorskip("cftime")
    xds, _, _ = source
    noleap, dates = _with_calendar(xds, cftime.DatetimeNoLeap)
    path = tmp_path / "noleap.nc"
    noleap.to_netcdf(path, engine="h5netcdf")
    convert([str(path)], tmp_path / "o", NAMES, CROP, 16, progress=False)
    expected = np.array([f"{d.year:04d}-{d.month:02d}-{d.day:02d}" for d in dates], dtype="datetime64[s]")
    assert np.array_equal(ShardedDataset(tmp_path / "o", split=None, normalize=False).times, expected)
    verify_dataset(tmp_path / "o")

    days360, _ = _with_calendar(xds, cftime.Datetime360Day)
    path = tmp_path / "360.nc"
    days360.to_netcdf(path, engine="h5netcdf")
    rc, err = _convert_cli(capsys, path, tmp_path / "x")
    assert rc == 2 and len(err) == 1 and "'360_day' calendar" in err[0] and "noleap" in err[0], err


def test_overwrite_keeps_the_old_data_set_until_the_new_one_is_complete(source, tmp_path, capsys):
    xds, x, ds = source
    good = tmp_path / "good.nc"
    xds.to_netcdf(good, engine="h5netcdf")
    out = tmp_path / "out"
    convert([str(good)], out, NAMES, CROP, 16, progress=False)
    (out / "NOTES.txt").write_text("mine")
    before = (out / "manifest.json").read_text()

    bad = _with_nan_in_ocean(xds, ds, time=-1)  # found only at the very last time step
    bad_path = tmp_path / "bad.nc"
    bad.to_netcdf(bad_path, engine="h5netcdf")
    rc, err = _convert_cli(capsys, bad_path, out, "--crop", CROP, "--overwrite")
    assert rc == 2 and len(err) == 1 and "NaN in ocean cells of 'vxsi'" in err[0]
    assert (out / "manifest.json").read_text() == before
    _check_converted(out, x, ds)  # the old set, complete and intact
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left

    # A good replacement swaps in, and leaves the user's own file alone.
    rc, err = _convert_cli(capsys, good, out, "--crop", CROP, "--shard-size", "32", "--overwrite")
    assert rc == 0, err
    assert read_manifest(out).shards[0].count == 32 and (out / "NOTES.txt").read_text() == "mine"
    _check_converted(out, x, ds)


def test_a_failed_swap_puts_the_old_set_back_and_other_hosts_staging_is_kept(source, tmp_path, monkeypatch):
    """A rename failing half-way through the swap (or Ctrl-C there) leaves the old set as it was;
    a staging folder of a conversion on another node (its pid is meaningless here) is not removed."""
    xds, x, ds = source
    good = tmp_path / "good.nc"
    xds.to_netcdf(good, engine="h5netcdf")
    out = tmp_path / "out"
    convert([str(good)], out, NAMES, CROP, 16, progress=False)
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    dead = 2**22 + 1  # above Linux's largest pid_max: no process here has it
    elsewhere = tmp_path / f".out.tmp-another-node-{dead}-0a1b"  # alive there, for all we know
    crashed_here = tmp_path / f".out.tmp-{socket.gethostname()}-{dead}-2c3d"
    elsewhere.mkdir()
    crashed_here.mkdir()

    real_replace = os.replace
    staged = ".out.tmp-"

    def failing(src, dst):
        if Path(src).parent.name.startswith(staged) and Path(dst) == out / "manifest.json":
            raise KeyboardInterrupt  # the new shards are in, the manifest not yet
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", failing)
    with pytest.raises(KeyboardInterrupt):
        convert([str(good)], out, NAMES, CROP, 32, progress=False, overwrite=True)
    monkeypatch.undo()
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before
    _check_converted(out, x, ds)
    assert elsewhere.is_dir() and not crashed_here.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [elsewhere.name]


def test_a_temporary_folder_that_cannot_be_made_is_one_line(source, tmp_path, capsys, monkeypatch):
    """The temporary folder is made with mkdir, never reused: something in its place is refused."""
    xds, _, _ = source
    good = tmp_path / "good.nc"
    xds.to_netcdf(good, engine="h5netcdf")
    monkeypatch.setattr(outputs.secrets, "token_hex", lambda n: "feed")  # its random part, made predictable
    blocker = tmp_path / f".out.tmp-{socket.gethostname()}-{os.getpid()}-feed"
    blocker.symlink_to(tmp_path / "elsewhere")  # a planted link: never followed
    rc, err = _convert_cli(capsys, good, tmp_path / "out")
    assert rc == 2 and len(err) == 1 and f"cannot create the temporary folder {blocker}" in err[0], err
