"""The converter's inputs: checked one by one, then read as one lazy (dask) data set across files."""

from __future__ import annotations

import dask.array
import numpy as np
import pytest
import xarray as xr

from hpc_seaice.data.convert.inputs import open_inputs
from hpc_seaice.data.format.variables import UNITS
from hpc_seaice.errors import UserError

NAMES = ["sit", "sic", "damage", "siu", "siv"]


def _write(tmp_path, starts=(0, 7, 12), n=20, grid=(6, 5), sic_units="1"):
    """Three NetCDF files of one record, split at ``starts``; values encode (time, variable, y, x)."""
    t = np.arange(n)
    values = t[:, None, None, None] * 1000.0 + np.arange(5)[None, :, None, None] * 100.0
    values = values + np.arange(grid[0] * grid[1]).reshape(grid)[None, None]
    times = np.datetime64("2010-01-01", "ns") + t * np.timedelta64(1, "D")
    ds = xr.Dataset(
        {
            v: (("time", "y", "x"), values[:, k], {"units": sic_units if v == "sic" else UNITS[v]})
            for k, v in enumerate(NAMES)
        },
        coords={"time": times},
    )
    paths = []
    for i, (lo, hi) in enumerate(zip(starts, [*starts[1:], n])):
        path = tmp_path / f"part{2 - i}.nc"  # names sort against time order on purpose
        ds.isel(time=slice(lo, hi)).to_netcdf(path, engine="h5netcdf")
        paths.append(path)
    return paths, values.astype(np.float32), times.astype("datetime64[s]")


def test_blocks_across_file_boundaries_read_the_source_values(tmp_path):
    paths, values, times = _write(tmp_path)
    # 3 time steps per chunk: blocks 6..9 and 12..15 straddle the files' boundaries at 7 and 12.
    inputs = open_inputs([str(p) for p in paths], NAMES, block_bytes=3 * 4 * 6 * 5)
    try:
        assert isinstance(inputs.ds["sit"].data, dask.array.Array)  # lazy: nothing read at open
        assert inputs.ds["sit"].data.chunks[0][:3] == (3, 3, 1)  # chunks never span two files
        assert [f.path for f in inputs.files] == [str(p) for p in paths]  # in time order, not name order
        assert np.array_equal(inputs.times, times)
        for lo in range(0, 20, 3):
            steps = slice(lo, min(20, lo + 3))
            block = inputs.read(NAMES, steps, slice(1, 5), slice(0, 4))
            assert np.array_equal(block, values[steps, :, 1:5, 0:4])
        assert [inputs.path_at(i) for i in (0, 6, 7, 11, 12, 19)] == [str(paths[k]) for k in (0, 0, 1, 1, 2, 2)]
    finally:
        inputs.close()


def test_percent_concentration_is_read_as_a_fraction(tmp_path):
    paths, values, _ = _write(tmp_path, sic_units="%")
    inputs = open_inputs([str(p) for p in paths], NAMES)
    try:
        block = inputs.read(NAMES, slice(5, 9), slice(None), slice(None))
        assert np.allclose(block[:, 1], values[5:9, 1] / 100) and np.array_equal(block[:, 0], values[5:9, 0])
    finally:
        inputs.close()


def test_inputs_that_do_not_fit_together_name_the_file(tmp_path):
    paths, _, _ = _write(tmp_path)
    other = xr.open_dataset(paths[1], engine="h5netcdf").load()
    overlap = tmp_path / "overlap.nc"
    other.to_netcdf(overlap, engine="h5netcdf")
    with pytest.raises(UserError, match=r"overlap\.nc: time steps overlap those of .*part1\.nc"):
        open_inputs([str(paths[0]), str(paths[1]), str(overlap)], NAMES)
    store = tmp_path / "later.zarr"
    later = other.assign_coords(time=other.time + np.timedelta64(400, "D"))
    later.to_zarr(store, consolidated=False)
    with pytest.raises(UserError, match=r"later\.zarr: zarr input among h5netcdf ones"):
        open_inputs([str(paths[0]), str(store)], NAMES)
    percent = tmp_path / "percent.nc"
    later["sit"].attrs["units"] = "m s-1"
    later.to_netcdf(percent, engine="h5netcdf")
    with pytest.raises(UserError, match=r"percent\.nc: variable 'sit': units 'm s-1' are not convertible to 'm'"):
        open_inputs([str(paths[0]), str(percent)], NAMES)


def test_inputs_on_different_grids_of_one_size_are_refused(tmp_path):
    paths, _, _ = _write(tmp_path)
    lat = np.linspace(70.0, 80.0, 30).reshape(6, 5)
    # One grid written three ways: float64; float32 with longitudes in 0..360 instead of -180..180;
    # int16 packed with a scale factor of 1e-3 degrees (a netCDF habit).
    for k, path in enumerate(paths):
        with xr.open_dataset(path, engine="h5netcdf") as src:
            ds = src.load()
        lon = np.mod(-lat, 360.0) if k == 1 else -lat
        coords = {"lat": (("y", "x"), lat.astype(np.float32 if k else np.float64)), "lon": (("y", "x"), lon)}
        packed = {"lat": {"dtype": "int16", "scale_factor": 1e-3, "add_offset": 75.0}} if k == 2 else {}
        ds.assign_coords(coords).to_netcdf(path, engine="h5netcdf", encoding=packed)
    open_inputs([str(p) for p in paths], NAMES).close()  # one grid: accepted
    with xr.open_dataset(paths[2], engine="h5netcdf") as src:
        ds = src.load()
    ds.assign_coords(lat=ds.lat + 0.5).to_netcdf(paths[2], engine="h5netcdf")  # another grid, same size
    with pytest.raises(UserError, match=r"part0\.nc: lat/lon differ from those of .*part2\.nc"):
        open_inputs([str(p) for p in paths], NAMES)


def test_later_inputs_are_compared_with_the_first_that_has_lat_lon(tmp_path):
    """A first file without lat/lon does not let two later ones on different grids through."""
    paths, _, _ = _write(tmp_path)
    lat = np.linspace(70.0, 80.0, 30).reshape(6, 5)
    for k, path in enumerate(paths[1:], start=1):
        with xr.open_dataset(path, engine="h5netcdf") as src:
            ds = src.load()
        coords = {"lat": (("y", "x"), lat + 0.5 * (k == 2)), "lon": (("y", "x"), -lat)}  # part0: another grid
        ds.assign_coords(coords).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(UserError, match=r"part0\.nc: lat/lon differ from those of .*part1\.nc"):
        open_inputs([str(p) for p in paths], NAMES)
