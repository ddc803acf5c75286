"""The multi-scale part of the synthetic ice drift: a multifractal velocity field.

Why: observed winter sea-ice deformation is scale dependent and intermittent in a particular
way, ``<eps_L^q> ~ L^-beta(q)`` with ``beta(1, 2, 3)`` about 0.2, 0.5, 1.0 (Marsan et al. 2004;
Rampal et al. 2019), which neither a smooth drift (``beta = 0``) nor rigid plates between
isolated faults (``beta(q) -> q - 1``) give. A multiplicative cascade does: the velocity is a
fractional integral of white noise modulated by a cascade,

    psi, phi = I^(2 + alpha) [ m^a xi_1 ],  I^(2 + alpha) [ m^a xi_2 ] * DIVERGENT_SHARE,
    u = -d psi / dy + d phi / dx,   v = d psi / dx + d phi / dy,

where ``m = exp(omega)`` with ``omega`` a log-correlated Gaussian field (power ~ 1/k^2, so
its variance grows by ``LAMBDA2`` per e-fold of scales: a continuous cascade), ``xi`` white
noise and ``I^s`` the fractional integration ``k^-s`` in Fourier space. The velocity gradient
is then ``I^alpha[m^a xi]``: over a box of side L it is of order ``L^(alpha - 1) m_L^a``, so
``beta(q) ~ q (1 - alpha) + K(a q)`` with the cascade's convex ``K``. The cascade's spectrum is
concentrated on two directions 40 degrees apart (those of the LKF families), so the active
zones are streaks that cross at LKF angles. Constants were tuned with
:mod:`hpc_seaice.evaluation.deformation_stats` on winter states at 512 x 512 (measured values
in docs/synthetic_arctic.md).

Centred differences damp wavenumbers near the grid's Nyquist (response ``sin(x)/x``); the
filter divides that response out (up to a factor 1 / 0.35) so that the grid-scale deformation
keeps the power law down to one cell instead of bending at the two smallest box sides.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from hpc_seaice.data.synth.fields import wavenumbers

LAMBDA2 = 1.0  # variance of omega per e-fold of scales
FRACTIONAL_ORDER = 0.85  # alpha: the velocity gradient is I^alpha of the modulated noise
DIVERGENT_SHARE = 0.5  # rms of the divergent potential against the stream function
NOISE_TAU_DAYS = 3.0  # white noise xi decorrelates over this time
CASCADE_SPREAD_DEG = 4.0  # angular half-width of the cascade's two directions


def angular_weight(ky: np.ndarray, kx: np.ndarray, angle_deg: float, spread_deg: float) -> np.ndarray:
    """Gaussian weight of wave-vector directions around ``angle_deg`` (mod 180 degrees)."""
    phi = np.arctan2(ky, kx)
    d = np.angle(np.exp(2j * (phi - math.radians(angle_deg)))) / 2.0
    return np.exp(-0.5 * (d / math.radians(spread_deg)) ** 2)


def cascade_spectrum(grid: int, angle_deg: float, crossing_deg: float) -> np.ndarray:
    """Power of the cascade's log-field: 1 / (k^2 + 1) on two directions, each half the variance."""
    ky, kx, k = wavenumbers(grid)
    radial = np.where(k > 0, 1.0 / (k**2 + 1.0), 0.0)
    weight = np.where((kx == 0) | (kx == grid // 2), 1.0, 2.0)
    out = np.zeros_like(radial)
    for a in (angle_deg, angle_deg + crossing_deg):
        p = radial * angular_weight(ky, kx, a, CASCADE_SPREAD_DEG)
        out += 0.5 * p / (weight * p).sum()
    return out


class MultifractalDrift:
    """Velocity fields (m/s) of the cascade above; white noise carried in time as an AR(1).

    ``velocity(omega, a, erms)`` takes the unit-variance log-field ``omega`` of this step, the
    intermittency ``a`` and the target rms grid-scale total deformation ``erms`` (1/day at
    the nominal cell size ``cell_m``). One call per state, in order: the noise advances once per
    call, so a trajectory does not depend on how it is cut into blocks.
    """

    def __init__(self, grid: int, dt_days: float, cell_m: float, rng: np.random.Generator) -> None:
        self.grid = grid
        self.cell_m = cell_m
        self.rng = rng
        self.rho = math.exp(-dt_days / NOISE_TAU_DAYS)
        self.omega_std = math.sqrt(LAMBDA2 * math.log(max(grid / 2.0, 2.0)))
        ky, kx, k = wavenumbers(grid)
        filt = np.where(k > 0, (k**2 + 1.0) ** (-(2.0 + FRACTIONAL_ORDER) / 2.0), 0.0)
        # centred-difference response along each axis, divided out (capped)
        response = np.hypot(np.sinc(2.0 * kx / grid) * kx, np.sinc(2.0 * ky / grid) * ky) / np.maximum(k, 1e-9)
        filt = filt / np.maximum(response, 0.35)
        c = 2j * math.pi / grid
        # u = -dpsi/dy + dphi/dx, v = dpsi/dx + dphi/dy (index units; scaled to erms below)
        self.u_psi = (-c * ky * filt).astype(np.complex64)
        self.u_phi = (c * kx * filt * DIVERGENT_SHARE).astype(np.complex64)
        self.v_psi = (c * kx * filt).astype(np.complex64)
        self.v_phi = (c * ky * filt * DIVERGENT_SHARE).astype(np.complex64)
        self.noise = self.rng.standard_normal((2, grid, grid), dtype=np.float32)
        self._started = False
        # rms index-unit total deformation of unit white noise (m = 1): a fixed property of the
        # filter, measured once on a throwaway draw so the data streams are untouched
        probe = np.random.default_rng(12345).standard_normal((2, grid, grid), dtype=np.float32)
        self.unit_rms = self._rms_deformation(*self._velocity(probe))

    def _velocity(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = scipy.fft.rfft2(eta, workers=1)
        u = scipy.fft.irfft2(self.u_psi * e[0] + self.u_phi * e[1], s=(self.grid, self.grid), workers=1)
        v = scipy.fft.irfft2(self.v_psi * e[0] + self.v_phi * e[1], s=(self.grid, self.grid), workers=1)
        return u, v

    @staticmethod
    def _rms_deformation(u: np.ndarray, v: np.ndarray) -> float:
        uy, ux = np.gradient(u)
        vy, vx = np.gradient(v)
        return float(np.sqrt(np.mean((ux + vy) ** 2 + (ux - vy) ** 2 + (uy + vx) ** 2)))

    def velocity(self, omega: np.ndarray, a: float, erms: float) -> tuple[np.ndarray, np.ndarray]:
        if self._started:
            z = self.rng.standard_normal(self.noise.shape, dtype=np.float32)
            self.noise *= self.rho
            self.noise += math.sqrt(1.0 - self.rho**2) * z
        self._started = True
        m = np.exp((a * self.omega_std) * omega).astype(np.float32)
        m /= math.sqrt(float(np.mean(np.square(m, dtype=np.float64))))  # unit mean square
        u, v = self._velocity(self.noise * m)
        scale = erms / 86400.0 * self.cell_m / self.unit_rms  # index-unit gradient -> 1/s at cell_m
        return u * scale, v * scale
