"""Cell spacings and areas from lat/lon against analytic grids on the sphere."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_seaice.data.format.static import Static
from hpc_seaice.data.geo.cell_geometry import EARTH_RADIUS_M as R
from hpc_seaice.data.geo.cell_geometry import geometry_from_lat_lon, grid_geometry


def test_regular_lat_lon_grid():
    """dy = R dlat; dx = half the great circle between the two neighbours on a parallel; areas."""
    dlat, dlon = 0.25, 0.5
    lats = 60.0 + dlat * np.arange(40)
    lons = -10.0 + dlon * np.arange(30)
    lat, lon = np.meshgrid(lats, lons, indexing="ij")
    g = geometry_from_lat_lon(lat, lon)
    np.testing.assert_allclose(g.dy, R * np.radians(dlat), rtol=1e-9)
    phi = np.radians(lat)
    # great circle between (phi, lon - d) and (phi, lon + d): 2 R arcsin(cos(phi) sin(d))
    inner = R * np.arcsin(np.cos(phi[:, 1:-1]) * np.sin(np.radians(dlon)))
    np.testing.assert_allclose(g.dx[:, 1:-1], inner, rtol=1e-9)
    edge = 2 * R * np.arcsin(np.cos(phi[:, 0]) * np.sin(np.radians(dlon / 2)))
    np.testing.assert_allclose(g.dx[:, 0], edge, rtol=1e-9)
    # cell area vs the exact area of a lat/lon cell: R^2 dlon (sin(phi + dlat/2) - sin(phi - dlat/2))
    half = np.radians(dlat / 2)
    exact = R**2 * np.radians(dlon) * (np.sin(phi + half) - np.sin(phi - half))
    np.testing.assert_allclose(g.cell_area, exact, rtol=1e-4)
    assert g.cell_area[0, 0] / g.cell_area[-1, 0] > 1.2  # cells shrink towards the pole
    assert g.source == "lat/lon"
    # across the date line: longitudes jump from 179.75 to -179.75, the spacing does not
    wrapped = (lon + 185.0 + 180.0) % 360.0 - 180.0  # 175 E .. 170.5 W
    assert wrapped.max() - wrapped.min() > 300
    np.testing.assert_allclose(geometry_from_lat_lon(lat, wrapped).cell_area, g.cell_area, rtol=1e-9)


def test_polar_stereographic_grid_scale_factor():
    """True at the pole: a grid step d is d (1 + sin lat) / 2 on the ground (scale factor k = 2 / (1 + sin lat))."""
    d, n = 25e3, 64
    c = (np.arange(n) - (n - 1) / 2) * d
    y, x = np.meshgrid(c, c, indexing="ij")
    lat = 90.0 - 2.0 * np.degrees(np.arctan(np.hypot(x, y) / (2 * R)))
    lon = np.degrees(np.arctan2(y, x))
    g = geometry_from_lat_lon(lat, lon)
    ground = d * (1 + np.sin(np.radians(lat))) / 2
    np.testing.assert_allclose(g.dx[:, 1:-1], ground[:, 1:-1], rtol=2e-4)
    np.testing.assert_allclose(g.dy[1:-1], ground[1:-1], rtol=2e-4)
    np.testing.assert_allclose(g.cell_area[1:-1, 1:-1], ground[1:-1, 1:-1] ** 2, rtol=4e-4)
    assert g.mean_spacing_km() == pytest.approx(np.sqrt(g.cell_area).mean() / 1e3)


def test_stored_geometry_wins_and_degenerate_lat_lon_falls_back():
    lat, lon = np.meshgrid(np.linspace(70, 71, 4), np.linspace(0, 3, 5), indexing="ij")
    mask = np.ones((4, 5))
    stored = Static(mask=mask, lat=lat, lon=lon, cell_area=np.full((4, 5), 7.0))
    g = grid_geometry(stored)
    assert g.source == "static"
    np.testing.assert_array_equal(g.cell_area, 7.0)
    np.testing.assert_allclose(g.dy, geometry_from_lat_lon(lat, lon).dy)  # completed from lat/lon
    # every cell at one point: no usable spacing
    flat = Static(mask=mask, lat=np.full((4, 5), 80.0), lon=np.zeros((4, 5)))
    with pytest.raises(ValueError):
        grid_geometry(flat)
    g = grid_geometry(flat, fallback_spacing_m=12e3)
    assert g.source.startswith("nominal")
    np.testing.assert_array_equal(g.cell_area, 144e6)
    # a stored array of the wrong shape is an error even with a fallback
    wrong = Static(mask=mask, lat=lat, lon=lon, cell_area=np.ones((3, 5)))
    with pytest.raises(ValueError, match="cell_area has shape"):
        grid_geometry(wrong, fallback_spacing_m=12e3)
