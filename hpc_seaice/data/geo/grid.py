"""The model grid: a north-polar stereographic grid like EPSG:3413, 512 x 512 at 12 km.

Why a real projection: every metric of the project that involves distance (deformation rates,
spectra in cycles per km, sea-ice extent in km^2) needs true cell sizes, and users plot the
fields on a map. The grid is the WGS84 polar stereographic projection with true scale at 70 N
and central meridian 45 W (the EPSG:3413 parameters), cut to a 6144 km square placed like the
neXtSIM moorings crop of the paper: the pole near the centre, Bering Strait, Hudson Bay, the
Labrador Sea, the Nordic Seas and the Barents and Kara Seas inside, latitudes down to about
44 N in the corners.

A grid of ``n`` cells per side (any ``n`` that divides 512: 256, 128, 64, 32, ...) covers the
same square with cells ``512 / n`` times larger. Rows run along +y (row 0 is the southern edge
of the square, towards the Atlantic), columns along +x. Coordinates are computed analytically
(Snyder 1987, formulas 21-33 and 21-34 to 21-40), so no projection library is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hpc_seaice.errors import UserError

# WGS84 ellipsoid and the EPSG:3413 projection parameters.
SEMI_MAJOR_M = 6378137.0
INVERSE_FLATTENING = 298.257223563
LAT_TRUE_SCALE = 70.0
CENTRAL_MERIDIAN = -45.0
# The 512 x 512 domain: cell size and the projected coordinates of its lower-left corner.
BASE_GRID = 512
BASE_CELL_M = 12000.0
X0_M = -3300000.0
Y0_M = -3900000.0

_F = 1.0 / INVERSE_FLATTENING
_E2 = _F * (2.0 - _F)
_E = math.sqrt(_E2)


def _t(phi: np.ndarray | float) -> np.ndarray | float:
    s = np.sin(phi)
    return np.tan(np.pi / 4.0 - phi / 2.0) / ((1.0 - _E * s) / (1.0 + _E * s)) ** (_E / 2.0)


def _m(phi: np.ndarray | float) -> np.ndarray | float:
    return np.cos(phi) / np.sqrt(1.0 - _E2 * np.sin(phi) ** 2)


_PHI_C = math.radians(LAT_TRUE_SCALE)
_RHO_PER_T = SEMI_MAJOR_M * float(_m(_PHI_C)) / float(_t(_PHI_C))
# Scale factor at the pole (Snyder 21-35 with k0 from the true-scale latitude).
_K_POLE = _RHO_PER_T / SEMI_MAJOR_M * math.sqrt((1 + _E) ** (1 + _E) * (1 - _E) ** (1 - _E)) / 2.0


def forward(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude/longitude (degrees) -> projected x, y (metres)."""
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64) - CENTRAL_MERIDIAN)
    rho = _RHO_PER_T * _t(phi)
    return rho * np.sin(lam), -rho * np.cos(lam)


def inverse(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projected x, y (metres) -> latitude, longitude (degrees, longitude in [-180, 180))."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    t = np.hypot(x, y) / _RHO_PER_T
    chi = np.pi / 2.0 - 2.0 * np.arctan(t)
    e2, e4, e6, e8 = _E2, _E2**2, _E2**3, _E2**4
    phi = (
        chi
        + (e2 / 2 + 5 * e4 / 24 + e6 / 12 + 13 * e8 / 360) * np.sin(2 * chi)
        + (7 * e4 / 48 + 29 * e6 / 240 + 811 * e8 / 11520) * np.sin(4 * chi)
        + (7 * e6 / 120 + 81 * e8 / 1120) * np.sin(6 * chi)
        + (4279 * e8 / 161280) * np.sin(8 * chi)
    )
    lon = np.degrees(np.arctan2(x, -y)) + CENTRAL_MERIDIAN
    return np.degrees(phi), (lon + 180.0) % 360.0 - 180.0


def scale_factor(lat: np.ndarray) -> np.ndarray:
    """Map scale factor k at ``lat``: a projected length L is L / k metres on the ellipsoid."""
    phi = np.radians(np.minimum(np.asarray(lat, dtype=np.float64), 89.999))
    k = _RHO_PER_T * _t(phi) / (SEMI_MAJOR_M * _m(phi))
    return np.where(np.asarray(lat) >= 89.999, _K_POLE, k)


def check_grid(n: int) -> None:
    """``n`` must divide 512 and be at least 16, so that cells nest in the 512 x 512 grid."""
    if n < 16 or BASE_GRID % n:
        raise UserError(f"--grid: {n} must divide {BASE_GRID} and be at least 16 (e.g. 32, 64, 128, 256, 512)")


@dataclass(frozen=True)
class Grid:
    """One resolution of the domain; arrays are [n, n] with rows along y, columns along x."""

    n: int

    @property
    def cell_m(self) -> float:
        """Cell side in projected metres (true length at 70 N)."""
        return BASE_CELL_M * BASE_GRID / self.n

    @property
    def x(self) -> np.ndarray:
        """Projected x of the cell centres [n], metres."""
        return X0_M + (np.arange(self.n) + 0.5) * self.cell_m

    @property
    def y(self) -> np.ndarray:
        """Projected y of the cell centres [n], metres."""
        return Y0_M + (np.arange(self.n) + 0.5) * self.cell_m

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Projected x, y of every cell centre [n, n], metres."""
        return np.meshgrid(self.x, self.y)

    def lat_lon(self) -> tuple[np.ndarray, np.ndarray]:
        """Latitude, longitude of the cell centres [n, n], degrees (float64)."""
        return inverse(*self.xy())

    def spacing(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """True cell sizes dx, dy [n, n] (metres) and cell areas [n, n] (m^2).

        A conformal projection scales both directions alike, so dx = dy = cell / k.
        """
        lat, _ = self.lat_lon()
        d = self.cell_m / scale_factor(lat)
        return d, d.copy(), d * d


def polar_lat_lon(height: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """lat/lon (float32) of a ``height`` x ``width`` grid on the domain, square cells.

    A square grid dividing 512 is exactly :class:`Grid`; other shapes (a converter crop of
    unknown projection) get the cell size of the longer side, centred on the domain. This is
    the NaN-free default of the converter when its inputs carry no coordinates.
    """
    width = height if width is None else width
    side = BASE_GRID * BASE_CELL_M
    cell = side / max(height, width)
    cx, cy = X0_M + side / 2.0, Y0_M + side / 2.0
    x = cx + (np.arange(width) + 0.5 - width / 2.0) * cell
    y = cy + (np.arange(height) + 0.5 - height / 2.0) * cell
    lat, lon = inverse(*np.meshgrid(x, y))
    return lat.astype(np.float32), lon.astype(np.float32)


def grid_attrs(n: int) -> dict[str, float | str | int]:
    """Attributes that identify the grid in ``static.h5`` (read back by :func:`grid_from_attrs`)."""
    g = Grid(n)
    return {
        "grid_mapping_name": "polar_stereographic",
        "grid_cell_m": g.cell_m,
        "grid_x0_m": X0_M,
        "grid_y0_m": Y0_M,
        "latitude_of_projection_origin": 90.0,
        "standard_parallel": LAT_TRUE_SCALE,
        "straight_vertical_longitude_from_pole": CENTRAL_MERIDIAN,
        "semi_major_axis": SEMI_MAJOR_M,
        "inverse_flattening": INVERSE_FLATTENING,
    }


def grid_from_attrs(attrs: dict, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Projected cell-centre x [W], y [H] in metres from ``static.h5`` attributes, or None."""
    if attrs.get("grid_mapping_name") != "polar_stereographic" or "grid_cell_m" not in attrs:
        return None
    cell, x0, y0 = float(attrs["grid_cell_m"]), float(attrs["grid_x0_m"]), float(attrs["grid_y0_m"])
    return x0 + (np.arange(shape[1]) + 0.5) * cell, y0 + (np.arange(shape[0]) + 0.5) * cell
