"""Static climatology of the synthetic Arctic: regions, freezing order, thickness, mean drift.

Why from lat/lon on the real grid: the regions the metrics and users look at (multi-year ice
north of Greenland and the Canadian Archipelago, seasonal ice in the marginal seas, Atlantic
water keeping the Norwegian and southern Barents Seas open) are places on the map, so every
climatological field below is built from distances in projected kilometres to named points.
All fields are deterministic (no random numbers): the same at every seed and resolution.

The seasonal curves (functions of the day of year) are in :mod:`hpc_seaice.data.synth.seasons`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hpc_seaice.data.geo.coastline import ocean_mask
from hpc_seaice.data.geo.grid import Grid, check_grid, forward
from hpc_seaice.data.synth.seasons import smoothstep


def _km(lat: float, lon: float) -> tuple[float, float]:
    x, y = forward(np.array(lat), np.array(lon))
    return float(x) / 1e3, float(y) / 1e3


def _bump(x: np.ndarray, y: np.ndarray, lat: float, lon: float, scale_km: float) -> np.ndarray:
    """Gaussian of the distance (km) to a place."""
    cx, cy = _km(lat, lon)
    return np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / scale_km**2)


def _dist(x: np.ndarray, y: np.ndarray, lat: float, lon: float) -> np.ndarray:
    cx, cy = _km(lat, lon)
    return np.hypot(x - cx, y - cy)


@dataclass
class Geometry:
    """Static ingredients shared by every time step (arrays [n, n], float64 unless said)."""

    grid: Grid
    ocean: np.ndarray  # bool
    lat: np.ndarray
    lon: np.ndarray
    dx: np.ndarray  # true cell sizes, m
    dy: np.ndarray
    area: np.ndarray  # m^2
    coldness: np.ndarray  # km; cells freeze in order of decreasing coldness
    thickness: np.ndarray  # winter floe thickness of the old pack, m
    multiyear: np.ndarray  # 0 (seasonal) .. 1 (thick multi-year ice region)
    coast_km: np.ndarray  # distance from the nearest land cell, km
    fast_width_km: np.ndarray  # winter width of land-fast ice (wide on the Siberian shelves)
    u_mean: np.ndarray  # climatological drift along +x, +y, m/s
    v_mean: np.ndarray


def make_geometry(n: int) -> Geometry:
    """The climatology of the ``n`` x ``n`` grid."""
    check_grid(n)
    grid = Grid(n)
    ocean = ocean_mask(n)
    lat, lon = grid.lat_lon()
    dx, dy, area = grid.spacing()
    xm, ym = grid.xy()
    x, y = xm / 1e3, ym / 1e3
    cell_km = grid.cell_m / 1e3

    # Freezing order: ice lasts longest north of the Canadian Archipelago and Greenland and
    # retreats towards it; Atlantic water keeps the Norwegian and southern Barents Seas open;
    # Baffin Bay and the Siberian shelves clear in summer, Hudson Bay too.
    coldness = -_dist(x, y, 84.0, -95.0)
    coldness -= 2600.0 * _bump(x, y, 66.0, 2.0, 700.0)  # Norwegian Sea
    coldness -= 1300.0 * _bump(x, y, 71.5, 30.0, 450.0)  # southern Barents Sea
    coldness -= 1500.0 * _bump(x, y, 60.0, -35.0, 600.0)  # Irminger Sea, south of Greenland
    coldness -= 700.0 * _bump(x, y, 55.0, -50.0, 500.0)  # Labrador Sea
    coldness -= 450.0 * _bump(x, y, 72.0, -62.0, 350.0)  # Baffin Bay (open in summer)
    coldness -= 500.0 * _bump(x, y, 74.0, 130.0, 600.0)  # Laptev and East Siberian shelves
    coldness -= 450.0 * _bump(x, y, 75.0, 65.0, 450.0)  # Kara Sea
    coldness += 500.0 * _bump(x, y, 60.0, -85.0, 500.0)  # Hudson Bay freezes fully in winter
    coldness -= 900.0 * _bump(x, y, 52.0, 180.0, 700.0)  # North Pacific / southern Bering Sea

    # Thick multi-year ice north of Greenland and the Archipelago, thinner on the Siberian side.
    multiyear = _bump(x, y, 84.5, -70.0, 650.0)
    thickness = 1.2 + 2.4 * multiyear + 0.4 * _bump(x, y, 80.0, -150.0, 600.0)
    thickness -= 0.3 * smoothstep(_dist(x, y, 90.0, 0.0), 1500.0, 3000.0)

    coast_km = ndimage.distance_transform_edt(ocean) * cell_km - 0.5 * cell_km
    shelves = _bump(x, y, 74.0, 135.0, 500.0) + _bump(x, y, 71.0, 160.0, 350.0) + _bump(x, y, 73.0, 75.0, 300.0)
    fast_width_km = 25.0 + 150.0 * np.clip(shelves, 0.0, 1.0)

    u_mean, v_mean = _mean_drift(x, y, coast_km)
    return Geometry(
        grid=grid,
        ocean=ocean,
        lat=lat,
        lon=lon,
        dx=dx,
        dy=dy,
        area=area,
        coldness=coldness,
        thickness=np.clip(thickness, 0.8, None),
        multiyear=multiyear,
        coast_km=coast_km,
        fast_width_km=fast_width_km,
        u_mean=u_mean,
        v_mean=v_mean,
    )


def _mean_drift(x: np.ndarray, y: np.ndarray, coast_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beaufort Gyre plus a Transpolar Drift from the Laptev Sea out through Fram Strait (m/s).

    Both from a stream function psi (u = dpsi/dy, v = -dpsi/dx, non-divergent), slowed near the
    coasts. The gyre is anticyclonic (clockwise seen from above the pole).
    """
    gx, gy = _km(76.0, -148.0)
    r2 = ((x - gx) ** 2 + (y - gy) ** 2) / 550.0**2
    psi = -0.09 * 550e3 * np.exp(-0.5 * r2)  # m^2/s, peak speed about 0.055 m/s
    sx, sy = _km(78.0, 125.0)
    ex, ey = _km(79.0, 0.0)
    d = np.array([ex - sx, ey - sy]) / math.hypot(ex - sx, ey - sy)
    across = d[0] * y - d[1] * x  # signed distance from the axis through the pole, km
    across -= d[0] * sy - d[1] * sx
    width = 700.0
    psi = psi + 0.08 * width * 1e3 * np.tanh(across / width)  # 0.08 m/s along the axis
    h = x[0, 1] - x[0, 0]
    dpsi_dy, dpsi_dx = np.gradient(psi, h * 1e3, h * 1e3)
    slow = 1.0 - np.exp(-np.maximum(coast_km, 0.0) / 120.0)
    return dpsi_dy * slow, -dpsi_dx * slow
