"""A synthetic neXtSIM-like Arctic: the data set the demo and the tests train on.

Real neXtSIM output cannot be downloaded here, so this generator builds fields with the
structure the paper's models and metrics care about (DESIGN section 1):

- a static Arctic-like land mask on a polar-stereographic-like grid: a central ocean basin ringed
  by continents, an open Atlantic sector, a narrow Bering-like strait, an archipelago cut by
  channels, islands; about half the cells are ocean;
- ``sic`` with exact plateaus (1 in the pack, 0 in open water) and a marginal ice zone between;
  its extent follows a seasonal cycle (maximum around March, minimum around September);
- ``sit`` >= 0, thickest along the northern coasts of the archipelago and Greenland, 0 where
  there is no ice; ``damage`` in [0, 1] with thin linear kinematic features (LKFs) meeting at
  acute angles; ``siu``, ``siv`` from a stream function (non-divergent, spatially correlated),
  0 where there is no ice and slowed near coasts;
- every random ingredient is a Gaussian field with a power-law spectrum that evolves as an AR(1)
  process per Fourier mode (large scales decorrelate slowly, small scales fast), so consecutive
  6-hourly states are correlated and the fields carry structure on all scales.

Generation streams: the state is a handful of Fourier coefficient arrays, each time step is
produced from the previous one, and samples go to disk shard by shard. Everything is drawn from
one ``numpy.random.Generator`` seeded with ``--seed``, so a data set is reproducible.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from scipy import ndimage

from hpc_seaice.data.manifest import DEFAULT_SPLITS, Manifest, in_split, read_manifest, write_manifest
from hpc_seaice.data.shards import fields_writer, prepare_output_dir
from hpc_seaice.data.static import read_static, write_static
from hpc_seaice.data.stats import RunningStats, safe_std
from hpc_seaice.data.variables import BOUNDS, VARIABLES
from hpc_seaice.data.verify import split_counts
from hpc_seaice.errors import UserError

DAY_S = 86400.0
YEAR_DAYS = 365.25
# Day of year of the extent maximum (mid March) and of the thickness maximum (end of April).
EXTENT_MAX_DOY = 74.0
THICKNESS_MAX_DOY = 120.0


# --------------------------------------------------------------------------------------------
# time axis


def parse_freq(freq: str) -> np.timedelta64:
    """``6h``, ``1D``, ``5D``, ``30min``, ``1W`` -> timedelta64[s] (pandas offset aliases)."""
    import pandas as pd

    try:
        step = pd.to_timedelta(freq)
    except (ValueError, TypeError):
        raise UserError(f"--freq: {freq!r} is not a time step such as 6h, 1D or 5D") from None
    seconds = int(step.total_seconds())
    if seconds <= 0:
        raise UserError(f"--freq: {freq!r} must be positive")
    return np.timedelta64(seconds, "s")


def synth_times(start: str, end: str, freq: str) -> np.ndarray:
    """Time stamps from ``start`` to ``end`` inclusive (a bare end date includes its whole day)."""
    try:
        t0 = np.datetime64(start, "s")
        t1 = np.datetime64(end, "s")
    except ValueError:
        raise UserError(f"--start/--end: {start!r}, {end!r} are not ISO dates") from None
    if len(end.strip()) <= 10:
        t1 = t1 + np.timedelta64(1, "D") - np.timedelta64(1, "s")
    if t1 < t0:
        raise UserError(f"--end {end} is before --start {start}")
    step = parse_freq(freq)
    n = int((t1 - t0) // step) + 1
    return t0 + step * np.arange(n)


def day_of_year(times: np.ndarray) -> np.ndarray:
    t = times.astype("datetime64[s]")
    return (t - t.astype("datetime64[Y]")).astype(np.float64) / DAY_S


# --------------------------------------------------------------------------------------------
# geometry: grid, coordinates, land mask, climatologies


def grid_coordinates(height: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres in domain units: X (columns), Y (rows), the pole at the centre.

    The longer side spans (-1, 1); cells are square.
    """
    width = height if width is None else width
    side = max(height, width)
    cx = (np.arange(width) + 0.5 - width / 2.0) / side * 2.0
    cy = (np.arange(height) + 0.5 - height / 2.0) / side * 2.0
    x, y = np.meshgrid(cx, cy)
    return x, y


def polar_lat_lon(height: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Polar-stereographic-like latitude/longitude: 90 N at the centre, about 40 N in the corners.

    Stereographic projection from the South Pole: r = k tan((90 - lat) / 2); k puts the corners
    of a square grid (r = sqrt 2) at 40 N and the edge midpoints near 53 N, like the neXtSIM
    pan-Arctic grid. Also the NaN-free default of the converter when inputs carry no lat/lon.
    """
    x, y = grid_coordinates(height, width)
    r = np.hypot(x, y)
    k = math.sqrt(2.0) / math.tan(math.radians(25.0))
    lat = 90.0 - 2.0 * np.degrees(np.arctan(r / k))
    # Rotate so that the Atlantic sector (bottom right) sits near 0 E, like the usual Arctic maps.
    lon = (np.degrees(np.arctan2(y, x)) + 45.0 + 180.0) % 360.0 - 180.0
    return lat.astype(np.float32), lon.astype(np.float32)


def _low_pass_field(rng: np.random.Generator, grid: int, kmax: int, slope: float) -> np.ndarray:
    """Unit-variance random field with wavenumbers |k| <= kmax (cycles per domain).

    The coefficients are drawn on a fixed (2 kmax + 1, kmax + 1) block whatever the grid, so the
    large-scale geometry (coasts, basins) is the same at 64, 128 or 512 cells.
    """
    ky = np.arange(-kmax, kmax + 1)[:, None]
    kx = np.arange(0, kmax + 1)[None, :]
    k = np.hypot(kx, ky)
    amp = np.where((k > 0) & (k <= kmax), (k**2 + 1.0) ** (-slope / 4.0), 0.0)
    coef = (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    kmax_fit = min(kmax, grid // 2 - 1)
    spec = np.zeros((grid, grid // 2 + 1), np.complex128)
    for row, kyv in enumerate(range(-kmax, kmax + 1)):
        if abs(kyv) <= kmax_fit:
            spec[kyv % grid, : kmax_fit + 1] = coef[row, : kmax_fit + 1]
    field = scipy.fft.irfft2(spec, s=(grid, grid), norm="forward")
    return (field - field.mean()) / (field.std() + 1e-12)


def _blob(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float, angle: float = 0.0) -> np.ndarray:
    """Gaussian bump centred at (cx, cy), axes sx, sy, rotated by ``angle`` degrees."""
    a = math.radians(angle)
    dx, dy = x - cx, y - cy
    u = dx * math.cos(a) + dy * math.sin(a)
    v = -dx * math.sin(a) + dy * math.cos(a)
    return np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))


def _sector(theta: np.ndarray, centre_deg: float, half_width_deg: float) -> np.ndarray:
    d = np.angle(np.exp(1j * (theta - math.radians(centre_deg))))
    return np.exp(-0.5 * (d / math.radians(half_width_deg)) ** 2)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def arctic_mask(grid: int, rng: np.random.Generator, ocean_fraction: float = 0.5) -> np.ndarray:
    """Boolean ocean mask: a central basin ringed by land, with inlets, straits and islands.

    Continents come from a "landness" score (distance from the pole, made ragged by low-pass
    noise, plus a Greenland-like land mass and a wide Atlantic opening) thresholded at the
    quantile giving ``ocean_fraction``. Channels are then cut through an archipelago (zero
    contours of a mid-scale field), a narrow strait leads to a Pacific-like basin in a corner,
    and islands are added. Ocean not connected to the central basin (lakes) becomes land, so
    the final fraction is close to, not exactly, ``ocean_fraction``.
    """
    x, y = grid_coordinates(grid)
    r = np.hypot(x, y)
    th = np.arctan2(y, x)
    coarse = _low_pass_field(rng, grid, 6, 3.0)
    ragged = _low_pass_field(rng, grid, 24, 2.0)
    channels = _low_pass_field(rng, grid, 10, 2.0)
    islands = _low_pass_field(rng, grid, 28, 1.0)
    score = r * (1.0 + 0.08 * coarse) + 0.035 * ragged
    score += 0.6 * _blob(x, y, 0.55, 0.32, 0.26, 0.15, angle=35.0)  # Greenland
    score -= 0.5 * _sector(th, -40.0, 16.0) * _smoothstep(r, 0.5, 0.8)  # Atlantic opening
    ocean = score < np.quantile(score, ocean_fraction - 0.02)
    # Archipelago (Canadian-like): land between Greenland and the strait, cut by channels.
    arch = (_sector(th, 80.0, 22.0) > 0.5) & (r > 0.45) & (r < 0.9)
    ocean |= arch & ((np.abs(channels) < 0.13) | (channels > 0.6))
    # Bering-like strait (about 2 % of the domain wide) towards a small Pacific basin.
    along = np.cos(th - math.radians(135.0)) * r
    across = np.abs(np.sin(th - math.radians(135.0))) * r
    ocean |= (across < 0.02 * (1.0 + 0.2 * np.clip(ragged, -2.0, 2.0))) & (along > 0.3)
    ocean |= _blob(x, y, -0.85, 0.8, 0.2, 0.12, angle=-30.0) * (1.0 + 0.5 * ragged) > 0.5
    # Islands: Svalbard-, Franz-Josef-, Novaya-Zemlya-, New-Siberian-like, and random small ones.
    for cx, cy, sx, sy, ang in (
        (0.36, -0.24, 0.05, 0.07, 20.0),
        (0.14, -0.42, 0.05, 0.035, 0.0),
        (-0.02, -0.62, 0.15, 0.03, -30.0),
        (-0.45, -0.30, 0.05, 0.04, 0.0),
    ):
        ocean &= _blob(x, y, cx, cy, sx, sy, ang) < 0.5
    shelf = (r > 0.35) & (r < 0.8)
    ocean &= ~(shelf & (islands > 2.4))
    labels, _ = ndimage.label(ocean)
    centre = labels[grid // 2, grid // 2]
    if centre == 0:  # the pole itself is land for some seed: keep the largest basin instead
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        centre = int(np.argmax(sizes))
    return labels == centre


@dataclass
class Geometry:
    """Static ingredients shared by every time step."""

    ocean: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    coldness: np.ndarray  # climatological "how early it freezes", domain-distance units
    cold_sorted: np.ndarray  # coldness of ocean cells, ascending (for the extent quantile)
    thickness: np.ndarray  # climatological floe thickness, m
    coast: np.ndarray  # 0 at the coast -> 1 offshore (land-fast ice barely moves)
    u_mean: np.ndarray  # climatological drift, m/s (Beaufort gyre + transpolar drift)
    v_mean: np.ndarray


def make_geometry(grid: int, rng: np.random.Generator) -> Geometry:
    ocean = arctic_mask(grid, rng)
    lat, lon = polar_lat_lon(grid)
    x, y = grid_coordinates(grid)
    r = np.hypot(x, y)
    th = np.arctan2(y, x)
    # Ice survives longest north of the archipelago and Greenland; the Atlantic inflow is warm.
    coldness = -np.hypot(x - 0.05, y - 0.18)
    coldness -= 0.35 * _sector(th, -40.0, 30.0) * _smoothstep(r, 0.2, 0.8)
    coldness += 0.06 * _low_pass_field(rng, grid, 8, 3.0)
    cold_sorted = np.sort(coldness[ocean])
    thickness = 0.9 + 2.6 * _blob(x, y, 0.22, 0.42, 0.32, 0.22, angle=35.0) - 0.3 * _smoothstep(r, 0.4, 0.9)
    thickness = np.clip(thickness, 0.5, None)
    land_distance = ndimage.distance_transform_edt(ocean) * (2.0 / grid)
    coast = 1.0 - np.exp(-land_distance / 0.03)
    # Stream function of the mean drift; u = d(psi)/dY, v = -d(psi)/dX (non-divergent).
    psi = 0.06 * _blob(x, y, -0.3, 0.3, 0.3, 0.3)  # anticyclonic gyre (u = dpsi/dY gives clockwise)
    psi = -psi
    d = np.array([math.cos(math.radians(-15.0)), math.sin(math.radians(-15.0))])
    psi += 0.04 * (d[0] * y - d[1] * x)  # transpolar drift towards the Atlantic exit
    h = 2.0 / grid
    dpsi_dy, dpsi_dx = np.gradient(psi, h, h)
    u_mean = dpsi_dy
    v_mean = -dpsi_dx
    return Geometry(
        ocean=ocean,
        lat=lat,
        lon=lon,
        coldness=coldness,
        cold_sorted=cold_sorted,
        thickness=thickness,
        coast=coast,
        u_mean=u_mean,
        v_mean=v_mean,
    )


# --------------------------------------------------------------------------------------------
# evolving random fields


class SpectralAR1:
    """Gaussian random fields whose Fourier coefficients each follow an AR(1) process.

    ``a_k(t + dt) = rho_k a_k(t) + sqrt(1 - rho_k^2) sigma_k xi`` keeps the stationary spectrum
    sigma_k^2 while correlating consecutive states with ``rho_k = exp(-dt / tau_k)``; tau_k
    shrinks with wavenumber, as eddies and cracks live shorter than basin-scale anomalies.
    Only modes with non-negligible sigma_k are stored and drawn (band-limited fields are cheap).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        grid: int,
        dt_days: float,
        *,
        spectra: list[np.ndarray],
        taus: list[np.ndarray],
    ) -> None:
        self.rng = rng
        sigma = np.stack(spectra)
        # Negligible modes are exactly 0: float32 denormals would also slow every FFT.
        self.active = sigma > 1e-6 * sigma.max(axis=(1, 2), keepdims=True)
        self.active_flat = np.flatnonzero(self.active)
        rho = np.broadcast_to(np.stack([np.exp(-dt_days / t) for t in taus]), sigma.shape)[self.active]
        sig = sigma[self.active] * math.sqrt(0.5)  # per real/imaginary part
        self.shape = sigma.shape
        self.rho = rho.astype(np.float32)
        self.innov_sigma = (np.sqrt(1.0 - rho**2) * sig).astype(np.float32)
        self.coef = (sig * self._noise()).astype(np.complex64)
        self._started = False

    def _noise(self) -> np.ndarray:
        z = self.rng.standard_normal(2 * self.rho.size, dtype=np.float32)
        return z.view(np.complex64)

    def step(self) -> None:
        self.coef *= self.rho
        self.coef += self.innov_sigma * self._noise()

    def states(self, n: int) -> np.ndarray:
        """The next ``n`` states as full coefficient arrays [n, F, G, G/2+1] complex64."""
        out = np.zeros((n, *self.shape), np.complex64)
        for t in range(n):
            if self._started:
                self.step()
            self._started = True
            out[t].reshape(-1)[self.active_flat] = self.coef
        return out


def _wavenumbers(grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rfft2 wavenumbers in cycles per domain: ky [G, 1], kx [1, G/2+1], |k|."""
    ky = (np.fft.fftfreq(grid) * grid)[:, None]
    kx = (np.fft.rfftfreq(grid) * grid)[None, :]
    return ky, kx, np.hypot(kx, ky)


def _unit_spectrum(power: np.ndarray, kx: np.ndarray, grid: int) -> np.ndarray:
    """Amplitudes sigma_k with unit field variance for ``irfft2(norm="forward")``."""
    weight = np.where((kx == 0) | (kx == grid // 2), 1.0, 2.0)
    power = np.where(np.isfinite(power), power, 0.0)
    total = float((weight * power).sum())
    return np.sqrt(power / total) if total > 0 else power


class SyntheticArctic:
    """The time-stepping generator: ``states(times)`` gives samples [T, 5, H, W] float32.

    Successive calls continue the same trajectory; time steps are assumed ``dt_days`` apart.
    """

    def __init__(self, grid: int, seed: int, dt_days: float) -> None:
        if grid < 16:
            raise UserError(f"--grid: {grid} is too small (at least 16 cells)")
        self.grid = grid
        self.rng = np.random.default_rng(seed)
        self.geometry = make_geometry(grid, self.rng)
        g = self.geometry
        self.ocean_f32 = g.ocean.astype(np.float32)
        ky, kx, k = _wavenumbers(grid)

        def power_law(beta: float, k0: float) -> np.ndarray:
            p = (k**2 + k0**2) ** (-beta / 2.0)
            return np.where(k > 0, p, 0.0)

        def anisotropic(angle_deg: float, k_peak: float, spread_deg: float = 14.0) -> np.ndarray:
            # Wave vectors near one direction -> zero contours are long lines perpendicular to it.
            phi = np.arctan2(ky, kx)
            d = np.angle(np.exp(2j * (phi - math.radians(angle_deg)))) / 2.0  # direction mod pi
            ang = np.exp(-0.5 * (d / math.radians(spread_deg)) ** 2)
            radial = (k / k_peak) ** 2 * np.exp(-((k / k_peak) ** 2))
            return np.where(k > 0, radial * ang, 0.0)

        def tau(days: float) -> np.ndarray:
            return days / (1.0 + k / 8.0)

        rot = float(self.rng.uniform(0.0, 180.0))
        spectra = [
            _unit_spectrum(power_law(3.0, 2.0), kx, grid),  # 0 ice-edge anomaly
            _unit_spectrum(power_law(3.2, 2.0), kx, grid),  # 1 thickness anomaly
            _unit_spectrum(anisotropic(rot, 6.0), kx, grid),  # 2 LKF family 1
            _unit_spectrum(anisotropic(rot + 50.0, 6.0), kx, grid),  # 3 LKF family 2
            _unit_spectrum(power_law(4.0, 2.0), kx, grid),  # 4 LKF activity gate
            _unit_spectrum(power_law(4.5, 1.5), kx, grid),  # 5 stream function
        ]
        taus = [tau(8.0), tau(30.0), tau(3.0), tau(3.0), tau(4.0), tau(2.5)]
        self.fields = SpectralAR1(self.rng, grid, dt_days, spectra=spectra, taus=taus)
        # rms speed of the unit stream function, to scale the random drift to m/s.
        w = np.where((kx == 0) | (kx == grid // 2), 1.0, 2.0)
        grad2 = float((w * spectra[5] ** 2 * (np.pi**2 * (kx**2 + ky**2))).sum())
        self.psi_speed = math.sqrt(max(grad2 / 2.0, 1e-12))
        self.dt_days = dt_days
        self.interannual = 0.0

    def _extent_target(self, times: np.ndarray) -> np.ndarray:
        """Fraction of ocean with ice: seasonal cycle, interannual AR(1) anomaly, weak decline."""
        doy = day_of_year(times)
        year = (times - np.datetime64("2013-07-01", "s")).astype(np.float64) / (DAY_S * YEAR_DAYS)
        seasonal = 0.60 + 0.27 * np.cos(2.0 * math.pi * (doy - EXTENT_MAX_DOY) / YEAR_DAYS)
        rho = math.exp(-self.dt_days / YEAR_DAYS)
        anomaly = np.empty(len(times))
        for i, z in enumerate(self.rng.standard_normal(len(times))):
            self.interannual = rho * self.interannual + math.sqrt(1.0 - rho**2) * 0.03 * float(z)
            anomaly[i] = self.interannual
        return np.clip(seasonal + anomaly - 0.006 * year, 0.05, 0.98)

    def next_state(self, time: np.datetime64) -> np.ndarray:
        """One sample [5, H, W] (a block of one; see :meth:`states`)."""
        return self.states(np.array([time], dtype="datetime64[s]"))[0]

    def states(self, times: np.ndarray) -> np.ndarray:
        """Samples [T, 5, H, W] float32 at the next ``len(times)`` steps of the trajectory."""
        times = np.asarray(times, dtype="datetime64[s]")
        n = len(times)
        g = self.geometry
        target = self._extent_target(times)
        doy = day_of_year(times)

        def per_time(values: np.ndarray) -> np.ndarray:
            return np.asarray(values, dtype=np.float32)[:, None, None]

        summer = per_time(0.5 - 0.5 * np.cos(2.0 * math.pi * (doy - EXTENT_MAX_DOY) / YEAR_DAYS))  # 0 Mar, 1 Sep
        # Six fields per time step by inverse FFT; their gradients by central differences
        # (cheaper than four more FFTs, and LKF widths only need the gradient's magnitude).
        f = scipy.fft.irfft2(self.fields.states(n), s=(self.grid, self.grid), norm="forward", workers=1)
        edge_anom, thick_anom, f1, f2, gate, psi = (f[:, i] for i in range(6))
        f1y, f1x = np.gradient(f1, axis=(-2, -1))
        f2y, f2x = np.gradient(f2, axis=(-2, -1))
        h = 2.0 / self.grid  # domain units per cell
        psi_y, psi_x = np.gradient(psi, h, h, axis=(-2, -1))

        # Linear kinematic features: pixels within ~1 cell of zero contours of two anisotropic
        # fields (distance |F| / |grad F|), switched on where the gate field is active.
        dist = np.minimum(np.abs(f1) / (np.hypot(f1x, f1y) + 1e-6), np.abs(f2) / (np.hypot(f2x, f2y) + 1e-6))
        lines = np.exp(-np.square(dist / np.float32(0.7)))
        lkf = np.clip(1.3 * lines * np.clip(0.4 + 0.6 * gate, 0.0, 1.0), 0.0, 1.0)

        # Concentration: ice where the cold climatology plus anomaly beats the threshold that
        # gives the target extent; a linear ramp of width `miz` makes the marginal ice zone.
        m = g.cold_sorted.size
        threshold = per_time(g.cold_sorted[np.minimum(m - 1, ((1.0 - target) * m).astype(int))])
        miz = 0.035 * (1.0 + 0.8 * summer)
        potential = g.coldness.astype(np.float32) + np.float32(0.07) * edge_anom
        sic = np.clip((potential - threshold) / miz, 0.0, 1.0)
        sic = np.minimum(sic, 1.0 - 0.12 * lkf * (sic >= 1.0))  # leads open along cracks in the pack
        sic *= self.ocean_f32
        ice = sic > 0.0

        season_h = per_time(1.0 + 0.3 * np.cos(2.0 * math.pi * (doy - THICKNESS_MAX_DOY) / YEAR_DAYS))
        floe = g.thickness.astype(np.float32) * season_h * np.exp(0.3 * thick_anom) * (1.0 + 0.5 * lkf)
        sit = sic * floe  # cell-mean thickness: exactly 0 where sic is 0

        background = 0.25 - 0.15 * thick_anom + 0.15 * gate + 0.9 * (1.0 - sic) + 0.2 * summer
        damage = np.where(ice, np.clip(np.maximum(background, lkf), 0.0, 1.0), 0.0)

        speed = np.float32(0.07 / self.psi_speed)
        slow = g.coast.astype(np.float32) * (0.7 + 0.5 * damage)
        siu = np.where(ice, (g.u_mean.astype(np.float32) + speed * psi_y) * slow, 0.0)
        siv = np.where(ice, (g.v_mean.astype(np.float32) - speed * psi_x) * slow, 0.0)
        out = np.empty((n, 5, self.grid, self.grid), np.float32)
        for i, x in enumerate((sit, sic, damage, siu, siv)):
            out[:, i] = x
        return out


# --------------------------------------------------------------------------------------------
# data set generation


def _check_splits(times: np.ndarray, splits: dict[str, list[str]], start: str, end: str) -> None:
    for name, span in splits.items():
        if not in_split(times, span).any():
            raise UserError(
                f"--start {start} --end {end}: split {name} ({span[0]}..{span[1]}) would have no "
                f"samples; cover {min(s[0] for s in splits.values())}..{max(s[1] for s in splits.values())} "
                "(use --freq to make the set smaller)"
            )


def _check_disk(out: Path, nbytes: int) -> None:
    free = shutil.disk_usage(out).free
    if nbytes > 0.95 * free:
        raise UserError(f"{out}: the data set needs about {nbytes / 1e9:.1f} GB, only {free / 1e9:.1f} GB free")


def generate(
    out: str | os.PathLike,
    grid: int = 512,
    start: str = "2009-01-01",
    end: str = "2018-12-31",
    freq: str = "6h",
    seed: int = 0,
    shard_size: int = 256,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    splits: dict[str, list[str]] | None = None,
) -> Manifest:
    """Write a synthetic data set to ``out`` (shards, static with statistics, manifest last)."""
    from tqdm import tqdm

    if grid < 16:
        raise UserError(f"--grid: {grid} is too small (at least 16 cells)")
    if seed < 0:
        raise UserError(f"--seed: {seed} must be >= 0")
    splits = {k: list(v) for k, v in (splits or DEFAULT_SPLITS).items()}
    times = synth_times(start, end, freq)
    _check_splits(times, splits, start, end)
    out = prepare_output_dir(out, overwrite)
    sample_bytes = len(VARIABLES) * grid * grid * 4
    _check_disk(out, sample_bytes * len(times))

    dt_days = float(parse_freq(freq).astype(np.float64)) / DAY_S
    model = SyntheticArctic(grid, seed, dt_days)
    ocean = model.geometry.ocean
    lower = [BOUNDS[v][0] for v in VARIABLES]
    upper = [BOUNDS[v][1] for v in VARIABLES]
    stats = RunningStats(lower, upper)
    train = in_split(times, splits["train"]) if "train" in splits else np.zeros(len(times), bool)
    writer = fields_writer(out, [grid, grid], shard_size)
    # Samples generated per call: enough to amortise Python overhead on small grids, few
    # enough that the work arrays stay in cache (batched FFTs of large grids are memory bound).
    block_len = int(np.clip((1 << 16) // (grid * grid), 1, 64))
    with writer:
        bar = tqdm(
            total=len(times),
            desc=f"synth {grid}x{grid}",
            unit="sample",
            disable=progress is False,
            mininterval=0.1 if sys.stderr.isatty() else 15.0,  # a line every 15 s in logs
        )
        for lo in range(0, len(times), block_len):
            hi = min(len(times), lo + block_len)
            chunk = model.states(times[lo:hi])
            writer.write(chunk, times[lo:hi])
            sel = train[lo:hi]
            if sel.any():
                stats.update(chunk[sel], ocean)
            bar.update(hi - lo)
        bar.close()
    std = safe_std(stats.std, list(VARIABLES), str(out / "static.h5"))
    write_static(
        out,
        ocean,
        model.geometry.lat,
        model.geometry.lon,
        stats.mean,
        std,
        summary=stats.summary(),
        attrs={"stats_split": "train"},
    )
    source = {
        "generator": "hpc_seaice.data.synth",
        "seed": int(seed),
        "grid": int(grid),
        "start": start,
        "end": end,
        "freq": freq,
    }
    manifest = writer.build_manifest(splits=splits, source=source)
    write_manifest(out, manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# summary


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def summarize(path: str | os.PathLike) -> str:
    """Human-readable summary: samples per split, ocean fraction, per-variable statistics, size."""
    root = Path(path)
    manifest = read_manifest(root)
    static = read_static(root)
    counts = split_counts(root, manifest)
    h, w = manifest.grid
    lines = [
        f"{root}: {manifest.kind} data set, {manifest.num_samples} samples in {len(manifest.shards)} shards, "
        f"grid {h} x {w}, {manifest.time_start} .. {manifest.time_end}",
        "  samples per split: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        f"  ocean fraction: {float(static.mask.mean()):.3f}   size on disk: {_dir_size(root) / 1e6:.1f} MB",
    ]
    if static.mean is None or static.std is None:
        lines.append("  no normalisation statistics (run hpc-seaice data stats)")
        return "\n".join(lines)
    s = static.summary
    split = static.attrs.get("stats_split", "train")
    lines.append(f"  statistics over ocean cells of the {split} split:")
    header = (
        f"  {'variable':<8}{'units':>7}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}{'at lower':>10}{'at upper':>10}"
    )
    lines.append(header)
    for k, name in enumerate(manifest.variables):
        row = f"  {name:<8}{manifest.units[k]:>7}{static.mean[k]:>10.4g}{static.std[k]:>10.4g}"
        if s:
            lo = f"{s['frac_lower'][k]:.3f}" if math.isfinite(manifest.lower[k]) else "-"
            hi = f"{s['frac_upper'][k]:.3f}" if math.isfinite(manifest.upper[k]) else "-"
            row += f"{s['min'][k]:>10.4g}{s['max'][k]:>10.4g}{lo:>10}{hi:>10}"
        lines.append(row)
    return "\n".join(lines)


def cli_synth(args: Any) -> int:
    """``hpc-seaice data synth``: generate, then print the summary."""
    import time

    t0 = time.perf_counter()
    generate(
        args.out,
        grid=args.grid,
        start=args.start,
        end=args.end,
        freq=args.freq,
        seed=args.seed,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
    )
    print(summarize(args.out))
    print(f"  generated in {time.perf_counter() - t0:.1f} s", file=sys.stdout)
    return 0
