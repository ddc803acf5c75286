"""Sample NetCDF files carry the CF polar-stereographic grid mapping and projected x/y in metres."""

from __future__ import annotations

import netCDF4
import numpy as np

from hpc_seaice.data.grid import Grid, polar_lat_lon
from hpc_seaice.evaluation.netcdf import projected_axes, read_samples, write_samples


def _fields(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((2, 5, n, n)).astype(np.float32)


def test_grid_mapping_and_projected_coordinates(tmp_path):
    lat, lon = polar_lat_lon(64)
    path = write_samples(tmp_path / "s.nc", _fields(64), np.ones((64, 64)), lat, lon, {})
    with read_samples(path) as ds:
        g = Grid(64)
        assert np.allclose(ds["x"].values, g.x, atol=1.0) and np.allclose(ds["y"].values, g.y, atol=1.0)
        assert ds["x"].attrs["units"] == "m" and ds["y"].attrs["standard_name"] == "projection_y_coordinate"
        gm = ds["polar_stereographic"].attrs
        assert gm["grid_mapping_name"] == "polar_stereographic"
        assert gm["standard_parallel"] == 70.0 and gm["straight_vertical_longitude_from_pole"] == -45.0
        assert gm["latitude_of_projection_origin"] == 90.0
        for name in ("sit", "sic", "damage", "siu", "siv", "mask"):
            assert ds[name].attrs["grid_mapping"] == "polar_stereographic"
    # a second library sees the CF attributes too
    with netCDF4.Dataset(path) as nc:
        assert nc["sit"].grid_mapping == "polar_stereographic"
        assert set(nc["sit"].coordinates.split()) == {"lat", "lon"}
        assert nc["x"].units == "m"


def test_other_grids_keep_lat_lon_only(tmp_path):
    n = 16
    lat = np.random.default_rng(1).uniform(60, 80, (n, n))
    lon = np.random.default_rng(2).uniform(-180, 180, (n, n))
    assert projected_axes(lat, lon) is None
    path = write_samples(tmp_path / "s.nc", _fields(n), np.ones((n, n)), lat, lon, {})
    with read_samples(path) as ds:
        assert "polar_stereographic" not in ds.variables and "x" not in ds.coords
        assert "grid_mapping" not in ds["sit"].attrs


def test_a_shifted_grid_is_not_mistaken_for_the_projection():
    lat, lon = polar_lat_lon(32)
    assert projected_axes(lat, lon) is not None
    assert projected_axes(lat, (lon + 10.0 + 180.0) % 360.0 - 180.0) is None  # rotated
    assert projected_axes(-lat, lon) is None  # southern hemisphere
