"""Isotropic power spectral density, the smoothing diagnostic of the paper (Figs 2-3).

The ring estimator follows the authors' code (``get_fft_stats`` / ``estimate_spectrum`` in
cerea-daml/diffusion-nextsim-regional): a 2-D FFT of a square field, |F|^2, grouped into rings
of integer wavenumber ``k`` (``k - 0.5 <= |k| < k + 0.5`` for ``k = 1 .. n/2``) and scaled by
``pi ((k + 0.5)^2 - (k - 0.5)^2) / count = 2 pi k / count``, i.e. the ring mean times the ring's
area. Wavelength is ``n dx / k``.

The pan-Arctic grid is about half land, so the spectrum is taken over a square region of the
central Arctic (:func:`central_arctic_box`). That box is not periodic, and what is done to it
before the FFT decides what the small scales show (``estimator``):

- ``"tapered"`` (default): land cells inside the box are filled smoothly (the solution of
  Laplace's equation with the ocean values as boundary values, :func:`laplace_fill`), the mean
  and a least-squares plane are removed, and the box is multiplied by a 2-D Hann window whose
  power is renormalised (``mean(w^2) = 1``), so white noise keeps its level. Without this the
  jump between opposite box edges leaks a k^-2 tail over all wavenumbers that hides any
  smoothing at wavelengths of a few cells (a 1.5-cell Gaussian blur of a k^-3 field is off from
  its analytic transfer by over two decades there; tapered, by a few hundredths).
- ``"raw"``: the authors' estimator, kept for comparison: land filled with the box's ocean mean,
  no detrending, no window; Parseval holds exactly (``sum |F|^2 = n^2 sum x^2``).

:func:`band_log_ratios` scores a spectrum against a reference per band of wavelength in km:
large scales (> 400 km), the mesoscale (100-400 km) and the small scales (< 100 km), where the
smoothing of a latent model shows.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

DEFAULT_DX_KM = 12.0  # nominal neXtSIM grid spacing, used when the grid's own is unknown
ESTIMATORS = ("tapered", "raw")
# (name, shortest, longest wavelength in km): > 400 km, 100-400 km (both ends included), < 100 km
BANDS_KM: tuple[tuple[str, float, float], ...] = (
    ("large_gt400km", 400.0, math.inf),
    ("meso_100_400km", 100.0, 400.0),
    ("small_lt100km", 0.0, 100.0),
)
_FILL_CACHE: dict[bytes, tuple[np.ndarray, np.ndarray, object]] = {}


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


def _mean_fill(fields: np.ndarray, ocean: np.ndarray) -> np.ndarray:
    mean = np.where(ocean, fields, 0.0).sum(axis=(-2, -1), keepdims=True) / ocean.sum()
    return np.where(ocean, fields, mean)


def _laplace_system(ocean: np.ndarray) -> tuple[np.ndarray, np.ndarray, object]:
    """Unknown (land) cells, their known-neighbour adjacency and the factorised 5-point Laplacian.

    Each land cell's value is the mean of its in-box neighbours (missing neighbours beyond the
    box edge are left out: a zero-gradient edge), which is the discrete Laplace equation.
    """
    key = np.asarray(ocean.shape, dtype=np.int64).tobytes() + np.packbits(ocean).tobytes()
    if key in _FILL_CACHE:
        return _FILL_CACHE[key]
    h, w = ocean.shape
    land = np.flatnonzero(~ocean.ravel())
    index = np.full(h * w, -1, dtype=np.int64)
    index[land] = np.arange(land.size)
    yy, xx = np.divmod(land, w)
    rows, cols, vals = [], [], []
    known = sp.lil_matrix((land.size, h * w))
    degree = np.zeros(land.size)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = yy + dy, xx + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        degree += inside
        flat = ny[inside] * w + nx[inside]
        me = np.nonzero(inside)[0]
        other = index[flat]
        unk = other >= 0
        rows.append(me[unk])
        cols.append(other[unk])
        vals.append(-np.ones(unk.sum()))
        known[me[~unk], flat[~unk]] = 1.0
    rows.append(np.arange(land.size))
    cols.append(np.arange(land.size))
    vals.append(degree)
    a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(land.size,) * 2)
    entry = (land, known.tocsr(), splu(a))
    if len(_FILL_CACHE) > 8:
        _FILL_CACHE.clear()
    _FILL_CACHE[key] = entry
    return entry


def laplace_fill(fields: np.ndarray, ocean: np.ndarray) -> np.ndarray:
    """Fill the non-ocean cells of ``fields`` ``[..., H, W]`` with the harmonic interpolant of the ocean.

    Why not a constant: a constant fill puts a step at every coast inside the box, whose k^-2
    spectrum shows up at all small scales. The harmonic fill is as smooth as the data allow
    (it reproduces any linear field exactly). The factorised system is cached per mask.
    """
    ocean = np.asarray(ocean, dtype=bool)
    if ocean.all():
        return fields
    land, known, lu = _laplace_system(ocean)
    flat = fields.reshape(-1, ocean.size)
    rhs = known @ np.where(ocean.ravel(), flat, 0.0).T  # [unknowns, fields]
    out = flat.copy()
    out[:, land] = lu.solve(np.ascontiguousarray(rhs)).T
    return out.reshape(fields.shape)


def remove_plane(fields: np.ndarray) -> np.ndarray:
    """Subtract from each ``[..., n, m]`` field its least-squares fit ``a + b y + c x``."""
    h, w = fields.shape[-2:]
    y, x = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    design = np.stack([np.ones(h * w), y.ravel() - y.mean(), x.ravel() - x.mean()], axis=1)
    flat = fields.reshape(-1, h * w)
    coef, *_ = np.linalg.lstsq(design, flat.T, rcond=None)
    return (flat - (design @ coef).T).reshape(fields.shape)


def hann_window(n: int) -> np.ndarray:
    """2-D Hann window ``[n, n]`` scaled so that ``mean(w^2) = 1`` (white noise keeps its level)."""
    w = np.outer(np.hanning(n), np.hanning(n))
    return w / np.sqrt(np.mean(w**2))


@functools.lru_cache(maxsize=8)
def _psd_geometry(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened :func:`ring_index` rings, ring counts and :func:`hann_window` of an ``n x n`` box.

    Why cached: they depend on the box side alone, and an evaluation takes the spectrum of the same
    box for every state and model; built once per side, they are read-only as every call shares them.
    """
    ring, counts = ring_index(n)
    shared = (ring.ravel(), counts, hann_window(n))
    for array in shared:
        array.flags.writeable = False
    return shared


def isotropic_psd(
    fields: np.ndarray,
    mask: np.ndarray | None = None,
    box: tuple[slice, slice] | None = None,
    dx_km: float = DEFAULT_DX_KM,
    estimator: str = "tapered",
) -> Spectrum:
    """Isotropic PSD of square fields, averaged over all leading dimensions.

    Args:
        fields: ``[..., H, W]`` (e.g. ``[N, H, W]`` thickness states).
        mask: ``[H, W]`` ocean mask (1 = ocean) of the full grid; land inside the box is filled
            (harmonic fill for ``"tapered"``, the ocean mean for ``"raw"``). ``None``: every cell
            is used as it is.
        box: ``(y_slice, x_slice)`` square region; ``None``: the whole (square) grid.
        dx_km: grid spacing for the wavelength axis.
        estimator: ``"tapered"`` (default: fill, detrend, Hann) or ``"raw"`` (the authors').

    Returns:
        :class:`Spectrum` with ``n // 2`` rings, in (units of the field)^2 times the unnormalised
        FFT scaling (``sum_k |F_k|^2 = n^2 sum_x |x|^2``, Parseval, for ``"raw"``).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown spectrum estimator {estimator!r} (one of {', '.join(ESTIMATORS)})")
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
        ocean = np.asarray(mask) > 0.5
        if not ocean.any():
            raise ValueError("the spectrum box holds no ocean cell")
        x = laplace_fill(x, ocean) if estimator == "tapered" else _mean_fill(x, ocean)
    ring, counts, window = _psd_geometry(n)
    if estimator == "tapered":
        x = remove_plane(x) * window
    power = np.abs(np.fft.fft2(x)) ** 2
    power = power.reshape(-1, n * n).mean(axis=0) if power.ndim > 2 else power.ravel()
    sums = np.bincount(ring, weights=power, minlength=n // 2 + 1)[1 : n // 2 + 1]
    k, wavelength = wavenumbers(n, dx_km)
    psd = sums * (2.0 * np.pi * k) / counts
    return Spectrum(k, wavelength, psd, counts.copy())  # the caller's own counts, not the shared ones


def log_ratio(psd: np.ndarray, ref_psd: np.ndarray, select: np.ndarray | None = None) -> float:
    """Mean over (selected) wavenumbers of log10(PSD / reference PSD): 0 = same energy, < 0 = smoother.

    NaN when no selected wavenumber has positive power in both.
    """
    psd, ref_psd = np.asarray(psd, dtype=np.float64), np.asarray(ref_psd, dtype=np.float64)
    ok = (psd > 0) & (ref_psd > 0)
    if select is not None:
        ok &= select
    return float(np.mean(np.log10(psd[ok] / ref_psd[ok]))) if ok.any() else float("nan")


def band_rings(wavelength_km: np.ndarray) -> dict[str, np.ndarray]:
    """Per band of :data:`BANDS_KM`, which rings it holds (the 100-400 km band includes both ends)."""
    lam = np.asarray(wavelength_km, dtype=np.float64)
    return {
        name: (lam >= lo) & (lam <= hi) if name.startswith("meso") else (lam > lo) & (lam < hi)
        for name, lo, hi in BANDS_KM
    }


def band_log_ratios(psd: np.ndarray, ref_psd: np.ndarray, wavelength_km: np.ndarray) -> dict[str, float]:
    """:func:`log_ratio` per wavelength band of :data:`BANDS_KM` (NaN for a band without rings)."""
    return {name: log_ratio(psd, ref_psd, inside) for name, inside in band_rings(wavelength_km).items()}


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
