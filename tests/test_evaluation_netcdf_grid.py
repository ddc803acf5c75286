"""Sample NetCDF files carry the CF polar-stereographic grid mapping and projected x/y in metres."""

from __future__ import annotations

import netCDF4
import numpy as np

from hpc_seaice.data.format.samples_file import projected_axes, read_samples, samples_dataset, write_samples
from hpc_seaice.data.geo.grid import Grid, polar_lat_lon


def _fields(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((2, 5, n, n)).astype(np.float32)


def test_grid_mapping_and_projected_coordinates(tmp_path):
    lat, lon = polar_lat_lon(64)
    path = write_samples(tmp_path / "s.nc", samples_dataset(_fields(64), np.ones((64, 64)), lat, lon, {}))
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
    path = write_samples(tmp_path / "s.nc", samples_dataset(_fields(n), np.ones((n, n)), lat, lon, {}))
    with read_samples(path) as ds:
        assert "polar_stereographic" not in ds.variables and "x" not in ds.coords
        assert "grid_mapping" not in ds["sit"].attrs


def test_a_shifted_grid_is_not_mistaken_for_the_projection():
    lat, lon = polar_lat_lon(32)
    assert projected_axes(lat, lon) is not None
    assert projected_axes(lat, (lon + 10.0 + 180.0) % 360.0 - 180.0) is None  # rotated
    assert projected_axes(-lat, lon) is None  # southern hemisphere


def test_grid_mapping_is_cf_polar_stereographic_like_epsg3413(tmp_path):
    """The CF attributes (CF 1.8, appendix F) with EPSG:3413's values, and x/y that invert to lat/lon.

    The inversion is written out here (Snyder 1987, 21-39 and the iteration 7-9), not taken from
    the grid module, so a wrong attribute or a shifted axis cannot agree with itself.
    """
    import math

    import xarray as xr

    lat, lon = polar_lat_lon(32)
    path = write_samples(tmp_path / "s.nc", samples_dataset(_fields(32), np.ones((32, 32)), lat, lon, {"model": "m"}))
    with xr.open_dataset(path) as ds:
        gm = ds[ds["sic"].attrs["grid_mapping"]].attrs
        expected = {
            "grid_mapping_name": "polar_stereographic",
            "latitude_of_projection_origin": 90.0,
            "straight_vertical_longitude_from_pole": -45.0,
            "standard_parallel": 70.0,
            "false_easting": 0.0,
            "false_northing": 0.0,
            "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257223563,
        }
        for key, value in expected.items():
            assert gm[key] == value, key
        assert "scale_factor_at_projection_origin" not in gm  # CF: one of the two, not both
        for axis in ("x", "y"):
            assert ds[axis].dims == (axis,) and ds[axis].attrs["units"] == "m"
            assert ds[axis].attrs["standard_name"] == f"projection_{axis}_coordinate"
            assert ds[axis].attrs["axis"] == axis.upper()
        assert ds.attrs["Conventions"].startswith("CF-")
        xx, yy = np.meshgrid(ds["x"].values, ds["y"].values)
        file_lat, file_lon = ds["lat"].values, ds["lon"].values
    a = gm["semi_major_axis"]
    f = 1.0 / gm["inverse_flattening"]
    e = math.sqrt(f * (2 - f))
    pc = math.radians(gm["standard_parallel"])
    tc = math.tan(math.pi / 4 - pc / 2) / ((1 - e * math.sin(pc)) / (1 + e * math.sin(pc))) ** (e / 2)
    mc = math.cos(pc) / math.sqrt(1 - e * e * math.sin(pc) ** 2)
    t = np.hypot(xx - gm["false_easting"], yy - gm["false_northing"]) * tc / (a * mc)
    phi = np.pi / 2 - 2 * np.arctan(t)
    for _ in range(30):
        phi = np.pi / 2 - 2 * np.arctan(t * ((1 - e * np.sin(phi)) / (1 + e * np.sin(phi))) ** (e / 2))
    lon_ref = np.degrees(np.arctan2(xx, -yy)) + gm["straight_vertical_longitude_from_pole"]
    assert np.abs(np.degrees(phi) - file_lat).max() < 1e-4
    assert np.abs((lon_ref - file_lon + 180.0) % 360.0 - 180.0).max() < 1e-3
