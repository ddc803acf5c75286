"""Isotropic power spectral density, the smoothing diagnostic of the paper (Figs 2-3).

The estimator follows the authors' code (``get_fft_stats`` / ``estimate_spectrum`` in
cerea-daml/diffusion-nextsim-regional, PAPER_NOTES section 4): an unnormalised 2-D FFT of a
square field, |F|^2, grouped into rings of integer wavenumber ``k`` (``k - 0.5 <= |k| < k + 0.5``
for ``k = 1 .. n/2``) and scaled by ``pi ((k + 0.5)^2 - (k - 0.5)^2) / count = 2 pi k / count``,
i.e. the ring mean times the ring's area. Wavelength is ``n dx / k``.

The pan-Arctic grid is about half land, so the spectrum is taken over a square region of the
central Arctic (:func:`central_arctic_box`). Land cells that remain inside the box are filled with
the mean of the box's ocean cells of the same field: a zero fill would put a coastline step of
the size of the field's mean into every spectrum. No taper window is applied by default (as in
the authors' code); ``window="hann"`` is available to suppress the leakage from the box edges.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

DEFAULT_DX_KM = 12.0  # nominal neXtSIM grid spacing used by the authors' spectra


@dataclass
class Spectrum:
    """An isotropic spectrum: one PSD value per integer wavenumber ``k = 1 .. n/2``."""

    wavenumber: np.ndarray  # [K] integer wavenumber (cycles per box side)
    wavelength_km: np.ndarray  # [K] n * dx_km / k
    psd: np.ndarray  # [K] ring PSD averaged over all leading dimensions
    counts: np.ndarray  # [K] number of FFT coefficients in each ring

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "wavenumber": self.wavenumber.tolist(),
            "wavelength_km": self.wavelength_km.tolist(),
            "psd": [float(v) for v in self.psd],
        }


def radial_wavenumber(n: int) -> np.ndarray:
    """``|k|`` of every coefficient of an ``n x n`` FFT (integer frequencies, fft order)."""
    k = np.fft.fftfreq(n) * n
    return np.hypot(k[:, None], k[None, :])


def ring_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ring of every coefficient (``round(|k|)``, ``0 .. ``) and the count per ring ``k = 1 .. n/2``."""
    ring = np.floor(radial_wavenumber(n) + 0.5).astype(np.int64)
    counts = np.bincount(ring.ravel(), minlength=n // 2 + 1)[1 : n // 2 + 1]
    return ring, counts


def _fill_land(fields: np.ndarray, ocean: np.ndarray) -> np.ndarray:
    count = ocean.sum()
    if count == ocean.size:
        return fields
    if count == 0:
        raise ValueError("the spectrum box holds no ocean cell")
    mean = np.where(ocean, fields, 0.0).sum(axis=(-2, -1), keepdims=True) / count
    return np.where(ocean, fields, mean)


def isotropic_psd(
    fields: np.ndarray,
    mask: np.ndarray | None = None,
    box: tuple[slice, slice] | None = None,
    dx_km: float = DEFAULT_DX_KM,
    window: str | None = None,
) -> Spectrum:
    """Isotropic PSD of square fields, averaged over all leading dimensions.

    Args:
        fields: ``[..., H, W]`` (e.g. ``[N, H, W]`` thickness states).
        mask: ``[H, W]`` ocean mask (1 = ocean) of the full grid; land inside the box is filled
            with the field's ocean mean. ``None``: every cell is used as it is.
        box: ``(y_slice, x_slice)`` square region; ``None``: the whole (square) grid.
        dx_km: grid spacing for the wavelength axis.
        window: ``None`` (the authors' choice) or ``"hann"`` (2-D Hann taper).

    Returns:
        :class:`Spectrum` with ``n // 2`` rings, in (units of the field)^2 times the unnormalised
        FFT scaling (``sum_k |F_k|^2 = n^2 sum_x |x|^2``, Parseval).
    """
    x = np.asarray(fields, dtype=np.float64)
    if box is not None:
        x = x[..., box[0], box[1]]
        if mask is not None:
            mask = np.asarray(mask)[box[0], box[1]]
    n = x.shape[-1]
    if x.shape[-2] != n:
        raise ValueError(f"the spectrum needs a square region, got {x.shape[-2]}x{n}")
    if n < 4:
        raise ValueError(f"the spectrum region is too small ({n}x{n})")
    if mask is not None:
        x = _fill_land(x, np.asarray(mask) > 0.5)
    if window == "hann":
        w = np.hanning(n)
        x = x * np.outer(w, w)
    elif window is not None:
        raise ValueError(f"unknown window {window!r} (None or 'hann')")
    power = np.abs(np.fft.fft2(x)) ** 2
    power = power.reshape(-1, n * n).mean(axis=0) if power.ndim > 2 else power.ravel()
    ring, counts = ring_index(n)
    sums = np.bincount(ring.ravel(), weights=power, minlength=n // 2 + 1)[1 : n // 2 + 1]
    k, wavelength = wavenumbers(n, dx_km)
    psd = sums * (2.0 * np.pi * k) / counts
    return Spectrum(k, wavelength, psd, counts)


def wavenumbers(n: int, dx_km: float = DEFAULT_DX_KM) -> tuple[np.ndarray, np.ndarray]:
    """Ring wavenumbers ``k = 1 .. n/2`` of an ``n x n`` region and their wavelengths ``n dx / k`` (km)."""
    k = np.arange(1, n // 2 + 1)
    return k, n * dx_km / k


def central_arctic_box(mask: np.ndarray, min_ocean_fraction: float = 0.9, min_side: int = 8) -> tuple[slice, slice]:
    """The largest square centred on the grid centre whose cells are mostly ocean.

    Why centred: on the neXtSIM pan-Arctic grid the pole and the central Arctic basin sit in the
    middle of the grid, and the land (Greenland, the Canadian Archipelago, Siberia) around it. The
    side grows from ``min_side`` to the full grid; the largest side with at least
    ``min_ocean_fraction`` ocean cells is chosen, so the box adapts to any mask (synthetic data
    sets included). If not even the smallest box is mostly ocean, the fixed centred box of half
    the grid side is returned with a warning.

    Returns:
        ``(y_slice, x_slice)`` of a square region.
    """
    ocean = (np.asarray(mask) > 0.5).astype(np.int64)
    h, w = ocean.shape
    side_max = min(h, w)
    integral = np.zeros((h + 1, w + 1), dtype=np.int64)
    integral[1:, 1:] = ocean.cumsum(axis=0).cumsum(axis=1)
    cy, cx = h // 2, w // 2
    best = None
    for side in range(min(min_side, side_max), side_max + 1):
        y0 = min(max(cy - side // 2, 0), h - side)
        x0 = min(max(cx - side // 2, 0), w - side)
        y1, x1 = y0 + side, x0 + side
        count = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        if count >= min_ocean_fraction * side * side:
            best = (slice(y0, y1), slice(x0, x1))
    if best is None:
        side = max(side_max // 2, 1)
        y0, x0 = (h - side) // 2, (w - side) // 2
        warnings.warn(
            f"no centred square is {min_ocean_fraction:.0%} ocean; using the centred half-grid box",
            stacklevel=2,
        )
        best = (slice(y0, y0 + side), slice(x0, x0 + side))
    return best


def box_to_dict(box: tuple[slice, slice]) -> dict[str, int]:
    """JSON-friendly description of a box (start inclusive, stop exclusive)."""
    return {"y0": box[0].start, "y1": box[0].stop, "x0": box[1].start, "x1": box[1].stop}
