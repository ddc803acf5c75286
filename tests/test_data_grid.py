"""The polar-stereographic grid: projection formulas, cell sizes, resolutions, user errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpc_seaice.data.geo.grid import (
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


# --------------------------------------------------------------------------------------------
# Independent references: Snyder's formulas written out here (not the module's), checked on
# Snyder's own numerical example, and EPSG:3413 coordinates computed with PROJ 9 (pyproj 3.7).

WGS84_A = 6378137.0
WGS84_E2 = (1 / 298.257223563) * (2 - 1 / 298.257223563)


def snyder_forward(lat, lon, a, e2, lat_c, lon0):
    """Polar stereographic on the ellipsoid (Snyder 1987, 21-33, 21-34, 15-9, 14-15, 21-32)."""
    e = math.sqrt(e2)
    sgn = -1.0 if lat_c < 0 else 1.0  # the south polar case by the sign flip of Snyder p. 161
    phi = np.radians(sgn * np.asarray(lat, float))
    phic = math.radians(sgn * lat_c)
    lam = np.radians(sgn * (np.asarray(lon, float) - lon0))

    def t(p):
        s = np.sin(p)
        return np.tan(np.pi / 4 - p / 2) / ((1 - e * s) / (1 + e * s)) ** (e / 2)

    def m(p):
        return np.cos(p) / np.sqrt(1 - e2 * np.sin(p) ** 2)

    rho = a * m(phic) * t(phi) / t(phic)
    return sgn * rho * np.sin(lam), -sgn * rho * np.cos(lam), rho / (a * m(phi))


def snyder_lat_of_rho(rho, a=WGS84_A, e2=WGS84_E2, lat_c=70.0):
    """Latitude (radians) at projected radius rho, by Snyder's iteration 7-9 (not the series)."""
    e = math.sqrt(e2)
    pc = math.radians(lat_c)
    tc = math.tan(math.pi / 4 - pc / 2) / ((1 - e * math.sin(pc)) / (1 + e * math.sin(pc))) ** (e / 2)
    mc = math.cos(pc) / math.sqrt(1 - e2 * math.sin(pc) ** 2)
    t = np.asarray(rho, float) * tc / (a * mc)
    phi = np.pi / 2 - 2 * np.arctan(t)
    for _ in range(30):
        s = np.sin(phi)
        phi = np.pi / 2 - 2 * np.arctan(t * ((1 - e * s) / (1 + e * s)) ** (e / 2))
    return phi


def test_independent_formulas_reproduce_snyders_numerical_example():
    # Snyder (1987), p. 315: International ellipsoid, phi_c = 71 S, lambda_0 = 100 W,
    # point 75 S 150 E: x = -1,540,033.6 m, y = -560,526.4 m, k = 0.9896256.
    x, y, k = snyder_forward(-75.0, 150.0, 6378388.0, 0.00672267, -71.0, -100.0)
    assert abs(x + 1540033.6) < 0.1 and abs(y + 560526.4) < 0.1 and abs(k - 0.9896256) < 1e-7


@pytest.mark.parametrize(
    "lat, lon, x_ref, y_ref",
    [  # EPSG:4326 -> EPSG:3413 with PROJ 9
        (70.0, -45.0, 0.0, -2187927.6493),
        (60.0, 0.0, 2349829.1623, -2349829.1623),
        (45.0, 135.0, 0.0, 5131675.5678),
        (80.0, -150.0, -1048918.4605, 281056.8544),
        (66.5, -20.0, 1090586.7634, -2338770.8614),
        (75.0, 100.0, 937154.7796, 1338395.7305),
        (50.0, 10.0, 3695193.9749, -2587402.6764),
    ],
)
def test_forward_matches_epsg3413_from_proj_and_snyder(lat, lon, x_ref, y_ref):
    x, y = forward(np.array(lat), np.array(lon))
    assert abs(float(x) - x_ref) < 1e-3 and abs(float(y) - y_ref) < 1e-3
    xs, ys, k = snyder_forward(lat, lon, WGS84_A, WGS84_E2, 70.0, -45.0)
    assert abs(float(x) - xs) < 1e-3 and abs(float(y) - ys) < 1e-3
    assert abs(float(scale_factor(np.array(lat))) - k) < 1e-9


def _inv_k2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 / k^2 at projected x, y (area on the ellipsoid per projected area), independently."""
    rho = np.hypot(x, y)
    phi = snyder_lat_of_rho(rho)
    m = np.cos(phi) / np.sqrt(1 - WGS84_E2 * np.sin(phi) ** 2)
    return (WGS84_A * m / rho) ** 2


def _authalic_q(phi: float) -> float:
    e = math.sqrt(WGS84_E2)
    s = math.sin(phi)
    return (1 - WGS84_E2) * (s / (1 - WGS84_E2 * s * s) - math.log((1 - e * s) / (1 + e * s)) / (2 * e))


def test_integral_of_inverse_k2_gives_the_ellipsoidal_polar_cap():
    """Validates the area integrand: the disc inside 60 N has the area of the cap north of 60 N."""
    rho60 = math.hypot(*(float(v) for v in snyder_forward(60.0, 0.0, WGS84_A, WGS84_E2, 70.0, -45.0)[:2]))
    nodes, weights = np.polynomial.legendre.leggauss(200)
    r = (nodes + 1) / 2 * rho60
    disc = float((2 * np.pi * r * _inv_k2(r, 0 * r) * weights * rho60 / 2).sum())
    cap = math.pi * WGS84_A**2 * (_authalic_q(math.pi / 2) - _authalic_q(math.radians(60.0)))
    assert abs(disc / cap - 1) < 1e-9


@pytest.mark.parametrize("n", [512, 128, 32])
def test_cell_areas_sum_to_the_true_area_of_the_domain(n):
    """Sum of per-cell areas vs the ellipsoidal area of the 6144 km square (Gauss-Legendre)."""
    from hpc_seaice.data.geo.grid import BASE_CELL_M, X0_M, Y0_M

    side = 512 * BASE_CELL_M
    nodes, weights = np.polynomial.legendre.leggauss(300)
    xs, ys = X0_M + (nodes + 1) / 2 * side, Y0_M + (nodes + 1) / 2 * side
    xx, yy = np.meshgrid(xs, ys)
    true_area = float((_inv_k2(xx, yy) * np.outer(weights, weights)).sum() * (side / 2) ** 2)
    assert 36.5e12 < true_area < 37.1e12
    cells = float(Grid(n).spacing()[2].sum())
    assert abs(cells / true_area - 1) < 5e-7 * (512 / n) ** 2, (n, cells / true_area - 1)


def test_cell_sizes_are_the_distances_between_neighbouring_centres():
    """dx (dy) vs the ellipsoidal distance between horizontal (vertical) neighbours, 512 x 512."""
    g = Grid(512)
    xx, yy = g.xy()
    phi = snyder_lat_of_rho(np.hypot(xx, yy))
    lam = np.arctan2(xx, -yy)
    dx, dy, _ = g.spacing()

    # Earth-centred cartesian points on the ellipsoid; the chord between centres 12 km apart is
    # shorter than the arc by (d / R)^2 / 24, about 1e-7.
    n_rad = WGS84_A / np.sqrt(1 - WGS84_E2 * np.sin(phi) ** 2)
    pts = np.stack(
        [n_rad * np.cos(phi) * np.cos(lam), n_rad * np.cos(phi) * np.sin(lam), n_rad * (1 - WGS84_E2) * np.sin(phi)]
    )

    def distance(a, b):
        return np.linalg.norm(pts[(slice(None), *b)] - pts[(slice(None), *a)], axis=0)

    along_x = distance((slice(None), slice(0, -1)), (slice(None), slice(1, None)))
    along_y = distance((slice(0, -1), slice(None)), (slice(1, None), slice(None)))
    assert np.abs(along_x / (0.5 * (dx[:, :-1] + dx[:, 1:])) - 1).max() < 1e-4
    assert np.abs(along_y / (0.5 * (dy[:-1] + dy[1:])) - 1).max() < 1e-4
