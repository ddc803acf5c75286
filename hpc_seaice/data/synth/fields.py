"""Evolving Gaussian random fields for the synthetic Arctic (wind, ice-edge noise, LKF networks).

Why spectral AR(1): every random ingredient must be correlated in time (consecutive 6-hourly
states look alike), carry structure on many scales, and cost little on a 512 x 512 grid. Each
Fourier coefficient follows its own AR(1) process, so large scales decorrelate slowly and
small scales fast, and one inverse FFT per field and time step gives the field.
"""

from __future__ import annotations

import math

import numpy as np


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
        # Modes below 1e-3 of the largest amplitude are exactly 0: they are invisible, drawing
        # them would dominate the cost on large grids, and float32 denormals slow every FFT.
        self.active = sigma > 1e-3 * sigma.max(axis=(1, 2), keepdims=True)
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


def wavenumbers(grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rfft2 wavenumbers in cycles per domain: ky [G, 1], kx [1, G/2+1], |k|."""
    ky = (np.fft.fftfreq(grid) * grid)[:, None]
    kx = (np.fft.rfftfreq(grid) * grid)[None, :]
    return ky, kx, np.hypot(kx, ky)


def unit_spectrum(power: np.ndarray, kx: np.ndarray, grid: int) -> np.ndarray:
    """Amplitudes sigma_k with unit field variance for ``irfft2(norm="forward")``."""
    weight = np.where((kx == 0) | (kx == grid // 2), 1.0, 2.0)
    power = np.where(np.isfinite(power), power, 0.0)
    total = float((weight * power).sum())
    return np.sqrt(power / total) if total > 0 else power


def power_law(k: np.ndarray, beta: float, k0: float) -> np.ndarray:
    """Isotropic power ~ (k^2 + k0^2)^(-beta/2), 0 at k = 0 (fields have zero mean)."""
    p = (k**2 + k0**2) ** (-beta / 2.0)
    return np.where(k > 0, p, 0.0)


def anisotropic(
    ky: np.ndarray, kx: np.ndarray, angle_deg: float, k_lo: float, k_hi: float, spread_deg: float
) -> np.ndarray:
    """Power on wave vectors near one direction, |k| in [k_lo, k_hi] with a k^-1 slope.

    The zero contours of such a field are long, gently curving lines perpendicular to
    ``angle_deg``, of many lengths: the skeleton of one family of linear kinematic features.
    """
    k = np.hypot(kx, ky)
    phi = np.arctan2(ky, kx)
    d = np.angle(np.exp(2j * (phi - math.radians(angle_deg)))) / 2.0  # direction mod pi
    ang = np.exp(-0.5 * (d / math.radians(spread_deg)) ** 2)
    radial = np.where((k >= k_lo) & (k <= k_hi), 1.0 / np.maximum(k, 1e-9), 0.0)
    return radial * ang
