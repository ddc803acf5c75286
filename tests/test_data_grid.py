"""The polar-stereographic grid: projection formulas, cell sizes, resolutions, user errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpc_seaice.data.grid import (
    SEMI_MAJOR_M,
    Grid,
    check_grid,
    forward,
    grid_attrs,
    grid_from_attrs,
    inverse,
    polar_lat_lon,
    scale_factor,
)
from hpc_seaice.errors import UserError

E2 = 0.00669437999014  # WGS84 first eccentricity squared


def test_forward_matches_the_published_epsg3413_grid_corner():
    # NSIDC's polar stereographic north grid: the upper-left corner (-3850 km, 5850 km) is at
    # 30.98 N, 168.35 E (NSIDC user guide, WGS84 version of the grid).
    x, y = forward(np.array(30.98), np.array(168.35))
    assert abs(float(x) + 3850e3) < 3e3 and abs(float(y) - 5850e3) < 3e3
    # central meridian 45 W points to -y; 45 E to +x; the pole at the origin
    x, y = forward(np.array([60.0, 60.0, 90.0]), np.array([-45.0, 45.0, 0.0]))
    assert abs(x[0]) < 1e-6 and y[0] < 0 and x[1] > 0 and abs(y[1]) < 1e-6 and abs(x[2]) + abs(y[2]) < 1e-6


def test_inverse_round_trip():
    rng = np.random.default_rng(0)
    lat = rng.uniform(30.0, 89.9, 1000)
    lon = rng.uniform(-180.0, 180.0, 1000)
    lat2, lon2 = inverse(*forward(lat, lon))
    assert np.abs(lat2 - lat).max() < 1e-8
    assert np.abs(((lon2 - lon + 180.0) % 360.0) - 180.0).max() < 1e-8


def test_scale_factor_against_a_measured_meridian_arc():
    """k from the formula vs. projected length / ellipsoidal meridian arc (independent)."""
    for lat in (45.0, 60.0, 70.0, 80.0, 89.0):
        h = 1e-4
        phi = math.radians(lat)
        m_radius = SEMI_MAJOR_M * (1 - E2) / (1 - E2 * math.sin(phi) ** 2) ** 1.5
        _, y1 = forward(np.array(lat - h), np.array(-45.0))
        _, y2 = forward(np.array(lat + h), np.array(-45.0))
        k_measured = abs(float(y2 - y1)) / (m_radius * math.radians(2 * h))
        assert abs(float(scale_factor(np.array(lat))) - k_measured) < 1e-6
    assert abs(float(scale_factor(np.array(70.0))) - 1.0) < 1e-12  # true scale at 70 N
    assert abs(float(scale_factor(np.array(90.0))) - float(scale_factor(np.array(89.999)))) < 1e-6


def test_domain_and_cell_sizes():
    g = Grid(512)
    lat, lon = g.lat_lon()
    assert g.cell_m == 12000.0
    assert lat.max() > 89.9 and 40.0 < lat.min() < 47.0
    dx, dy, area = g.spacing()
    assert np.allclose(dx, dy) and np.allclose(area, dx * dy)
    assert 10e3 < dx.min() < dx.max() < 12.5e3  # shorter than 12 km south of 70 N, longer north
    # about 37 million km^2 (the square of 6144 km, corrected by the scale factor)
    assert 35e12 < area.sum() < 40e12


@pytest.mark.parametrize("n", [256, 128, 64, 32])
def test_coarser_grids_cover_the_same_domain_with_larger_cells(n):
    fine, coarse = Grid(512), Grid(n)
    b = 512 // n
    assert coarse.cell_m == 12000.0 * b
    assert np.allclose(coarse.x, fine.x.reshape(n, b).mean(axis=1))
    assert np.allclose(coarse.y, fine.y.reshape(n, b).mean(axis=1))
    area_fine = fine.spacing()[2].sum()
    area_coarse = coarse.spacing()[2].sum()
    assert abs(area_coarse / area_fine - 1.0) < 2e-3 * b


def test_polar_lat_lon_is_the_grid_for_squares_and_finite_for_crops():
    lat, lon = polar_lat_lon(64)
    glat, glon = Grid(64).lat_lon()
    assert np.allclose(lat, glat, atol=1e-4) and np.allclose(lon, glon, atol=1e-3)
    lat, lon = polar_lat_lon(40, 60)
    assert lat.shape == (40, 60) and np.isfinite(lat).all() and np.isfinite(lon).all()


def test_attrs_round_trip():
    x, y = grid_from_attrs(grid_attrs(128), (128, 128))
    assert np.allclose(x, Grid(128).x) and np.allclose(y, Grid(128).y)
    assert grid_from_attrs({}, (4, 4)) is None


@pytest.mark.parametrize("n", [8, 24, 48, 100, 1024])
def test_grids_that_do_not_divide_512_are_refused(n):
    with pytest.raises(UserError, match="--grid"):
        check_grid(n)
