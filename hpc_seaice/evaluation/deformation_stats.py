"""Statistics of sea-ice deformation that observations constrain: its PDF and its spatial scaling.

Why these two: sea-ice deformation is intermittent in space (a few narrow linear kinematic
features carry most of it) and scale dependent. The observed winter Arctic (RGPS) and neXtSIM
show both in the same way (Marsan et al. 2004, PRL 93, 178501; Rampal et al. 2019, The
Cryosphere 13, 2457): the moments of the total deformation measured over boxes of side L fall
as a power of L, ``<eps_L^q> ~ L^-beta(q)``, with ``beta(q)`` convex in q (about 0.2, 0.5, 1.0
for q = 1, 2, 3 between 10 and a few hundred km); and the grid-scale deformation has a
continuous, heavy-tailed PDF rather than a spike of rigid cells at zero.

The scaling estimator (:func:`deformation_scaling`) is the standard one:

1. velocity gradients ``du/dx, du/dy, dv/dx, dv/dy`` per cell, centred differences with the
   true spacings (:func:`hpc_seaice.data.geo.deformation.velocity_gradients`), kept only at pack
   cells whose four neighbours are pack too (a clean stencil, :func:`stencil_mask`);
2. for each box side L (cells), the four gradients averaged over every L x L box of a tiling
   whose cells all have a clean stencil ("fully in the pack"); several tilings shifted by
   fractions of L are pooled, so large boxes are not starved of samples;
3. the total deformation of each box, ``sqrt(div^2 + shear^2)`` of the averaged gradients
   (the averaged gradient of a box is the velocity's line integral around it over its area,
   what a box of drifting buoys measures);
4. ``<eps_L^q>`` over all boxes of all states; ``beta(q)`` is minus the least-squares slope of
   log ``<eps_L^q>`` against log L over the fit range.

Known answers (tested): a linear velocity field has the same deformation in every box, so
``beta(q) = 0``; one straight fault (a velocity jump across a line) is crossed by a share
~ 1/L of the boxes, each deforming ~ 1/L, so ``beta(q) = q - 1``; a Gaussian velocity field
with increments ~ L^H has ``beta(q) = q (1 - H)``.

Rates are in 1/s inside, per day in the results (``* 86400``), as they are usually plotted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpc_seaice.data.geo.deformation import SECONDS_PER_DAY, Spacing, stencil_mask, velocity_gradients

RIGID_PER_DAY = 1e-4  # below this a cell is "rigid" (the threshold, 1/day)
DEFAULT_SCALES = (1, 2, 4, 8, 16, 32)
DEFAULT_QS = (1, 2, 3)


def _stack(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a[None] if a.ndim == 2 else a


def pack_gradients(
    u: np.ndarray, v: np.ndarray, pack: np.ndarray, dx: Spacing, dy: Spacing
) -> tuple[np.ndarray, np.ndarray]:
    """Velocity gradients [T, 4, H, W] in 1/day (0 off the clean stencil) and the clean-stencil mask [T, H, W].

    ``u``, ``v`` in m/s and ``pack`` (bool) as ``[H, W]`` or ``[T, H, W]``; ``dx``, ``dy`` in m.
    """
    u, v = _stack(u).astype(np.float64), _stack(v).astype(np.float64)
    pack = np.broadcast_to(_stack(np.asarray(pack) > 0.5), u.shape)
    if u.shape != v.shape:
        raise ValueError(f"u {u.shape} and v {v.shape} differ")
    clean = np.stack([stencil_mask(p) for p in pack])
    grads = np.stack(velocity_gradients(u, v, dx, dy), axis=1) * SECONDS_PER_DAY
    return np.where(clean[:, None], grads, 0.0), clean


def total_from_gradients(g: np.ndarray) -> np.ndarray:
    """Total deformation from gradients [..., 4] = (du/dx, du/dy, dv/dx, dv/dy)."""
    ux, uy, vx, vy = np.moveaxis(g, -1, 0)
    return np.sqrt((ux + vy) ** 2 + (ux - vy) ** 2 + (uy + vx) ** 2)


def grid_deformation(u: np.ndarray, v: np.ndarray, pack: np.ndarray, dx: Spacing, dy: Spacing) -> np.ndarray:
    """Total deformation (1/day) of every pack cell with a clean stencil, all states, as one flat array."""
    grads, clean = pack_gradients(u, v, pack, dx, dy)
    return total_from_gradients(np.moveaxis(grads, 1, -1)[clean])


def _box_sum(sat: np.ndarray, r0: np.ndarray, c0: np.ndarray, side: int) -> np.ndarray:
    """Sums over the boxes with top-left cells (r0, c0) from a summed-area table [..., H+1, W+1]."""
    r1, c1 = r0 + side, c0 + side
    return sat[..., r1, c1] - sat[..., r0, c1] - sat[..., r1, c0] + sat[..., r0, c0]


def box_deformation(grads: np.ndarray, clean: np.ndarray, side: int, shifts: int = 4) -> np.ndarray:
    """Total deformation (1/day) of every ``side`` x ``side`` box fully in the clean pack.

    ``grads`` [T, 4, H, W] and ``clean`` [T, H, W] from :func:`pack_gradients`. Boxes of
    ``min(shifts, side)`` x ``min(shifts, side)`` tilings, shifted by multiples of
    ``side // min(shifts, side)`` cells along each axis, are pooled (overlapping boxes are
    counted once per tiling: the mean is unbiased, its noise smaller).
    """
    t, _, h, w = grads.shape
    # summed-area tables with a leading zero row and column: any box sum in four look-ups
    sat_g = np.zeros((t, 4, h + 1, w + 1))
    sat_g[:, :, 1:, 1:] = grads.cumsum(axis=2).cumsum(axis=3)
    sat_c = np.zeros((t, h + 1, w + 1), np.int64)
    sat_c[:, 1:, 1:] = clean.astype(np.int64).cumsum(axis=1).cumsum(axis=2)
    n = max(1, min(shifts, side))
    step = side // n
    out = []
    for oy in range(0, n * step, step):
        for ox in range(0, n * step, step):
            r = np.arange(oy, h - side + 1, side)
            c = np.arange(ox, w - side + 1, side)
            if r.size == 0 or c.size == 0:
                continue
            r0, c0 = np.meshgrid(r, c, indexing="ij")
            full = _box_sum(sat_c, r0, c0, side) == side * side  # [T, nr, nc]
            mean_g = np.moveaxis(_box_sum(sat_g, r0, c0, side), 1, -1) / (side * side)  # [T, nr, nc, 4]
            out.append(total_from_gradients(mean_g[full]))
    return np.concatenate(out) if out else np.zeros(0)


@dataclass
class ScalingFit:
    """``<eps_L^q>`` per box side and moment order, and the fitted exponents ``beta(q)``."""

    scales: np.ndarray  # [S] box sides in cells
    scales_km: np.ndarray  # [S] box sides in km (nominal cell size times the side)
    qs: np.ndarray  # [Q] moment orders
    moments: np.ndarray  # [Q, S] <eps_L^q>, (1/day)^q
    counts: np.ndarray  # [S] boxes pooled per side
    beta: np.ndarray  # [Q] minus the log-log slope over the fit range
    fit_range: tuple[int, int]  # smallest and largest side (cells) in the fit
    residual: np.ndarray  # [Q] largest |log10 misfit| of a fitted point

    def to_dict(self) -> dict[str, object]:
        return {
            "scales_cells": self.scales.tolist(),
            "scales_km": self.scales_km.tolist(),
            "qs": self.qs.tolist(),
            "moments_per_day_q": self.moments.tolist(),
            "boxes": self.counts.tolist(),
            "beta": self.beta.tolist(),
            "fit_range_cells": list(self.fit_range),
            "max_log10_residual": self.residual.tolist(),
        }


def deformation_scaling(
    u: np.ndarray,
    v: np.ndarray,
    pack: np.ndarray,
    dx: Spacing,
    dy: Spacing,
    *,
    scales: Sequence[int] = DEFAULT_SCALES,
    qs: Sequence[float] = DEFAULT_QS,
    fit_range: tuple[int, int] | None = None,
    shifts: int = 4,
    cell_km: float | None = None,
) -> ScalingFit:
    """``<eps_L^q> ~ L^-beta(q)`` by box averaging of the velocity gradients over the pack.

    ``u``, ``v`` (m/s) and ``pack`` (bool) as ``[H, W]`` or ``[T, H, W]`` (boxes of all states
    pooled); ``dx``, ``dy`` (m) scalars or per cell. ``fit_range`` (cells, inclusive) defaults
    to all ``scales``; a side with no box fully in the pack is an error, not a silent gap.
    """
    scales_arr = np.array(sorted(set(int(s) for s in scales)))
    if scales_arr.size < 2 or scales_arr[0] < 1:
        raise ValueError(f"scales must hold at least two sides >= 1 cell, got {list(scales)}")
    lo, hi = fit_range or (int(scales_arr[0]), int(scales_arr[-1]))
    if ((scales_arr >= lo) & (scales_arr <= hi)).sum() < 2:
        raise ValueError(f"fit range {lo}..{hi} cells holds fewer than two of the scales {scales_arr.tolist()}")
    qs_arr = np.asarray(qs, dtype=np.float64)
    grads, clean = pack_gradients(u, v, pack, dx, dy)
    moments = np.zeros((qs_arr.size, scales_arr.size))
    counts = np.zeros(scales_arr.size, np.int64)
    for j, side in enumerate(scales_arr):
        eps = box_deformation(grads, clean, int(side), shifts)
        if eps.size == 0:
            raise ValueError(f"no {side} x {side} box lies fully in the pack")
        counts[j] = eps.size
        moments[:, j] = [np.mean(eps**q) for q in qs_arr]
    if cell_km is None:
        cell_km = float(np.mean(dx)) / 1e3
    return fit_scaling(scales_arr, qs_arr, moments, counts, (lo, hi), cell_km)


def fit_scaling(
    scales: np.ndarray,
    qs: np.ndarray,
    moments: np.ndarray,
    counts: np.ndarray,
    fit_range: tuple[int, int],
    cell_km: float,
) -> ScalingFit:
    """``beta(q)``: minus the log-log slope of the moments ``[Q, S]`` over the sides in ``fit_range``."""
    lo, hi = fit_range
    in_fit = (scales >= lo) & (scales <= hi)
    x = np.log10(scales[in_fit].astype(np.float64))
    beta = np.zeros(qs.size)
    residual = np.zeros(qs.size)
    for i in range(qs.size):
        y = np.log10(np.maximum(moments[i, in_fit], 1e-300))
        slope, icpt = np.polyfit(x, y, 1)
        beta[i] = -slope
        residual[i] = np.abs(y - (slope * x + icpt)).max()
    return ScalingFit(scales, scales * cell_km, qs, moments, counts, beta, (lo, hi), residual)


@dataclass
class DeformationPdf:
    """The grid-scale PDF of total deformation: rigid share, tail shares, tail exponent."""

    count: int  # cells pooled
    median: float  # 1/day
    share_below: dict[float, float]  # threshold (1/day) -> share of cells below it
    share_above: dict[float, float]  # threshold (1/day) -> share of cells above it
    tail_exponent: float  # a in P(eps > x) ~ x^-a over the tail decade (density ~ x^-(1+a))
    tail_range: tuple[float, float]  # the decade fitted (1/day)
    tail_r2: float  # coefficient of determination of the straight line over that decade
    tail_bend: float  # exponent over the upper half of the decade minus the lower half (0: power law)
    bin_edges: np.ndarray  # log-spaced edges (1/day)
    density: np.ndarray  # PDF per unit eps in each bin

    def to_dict(self) -> dict[str, object]:
        return {
            "cells": self.count,
            "median_per_day": self.median,
            "share_below": {f"{k:g}": v for k, v in self.share_below.items()},
            "share_above": {f"{k:g}": v for k, v in self.share_above.items()},
            "tail_exponent": self.tail_exponent,
            "tail_range_per_day": list(self.tail_range),
            "tail_r2": self.tail_r2,
            "tail_bend": self.tail_bend,
        }


def survival_tail(
    eps: np.ndarray, start_quantile: float = 0.9, decades: float = 1.0
) -> tuple[float, tuple[float, float], float, float]:
    """Power-law fit of the survival function ``P(eps > x) ~ x^-a`` over ``decades`` above a quantile.

    Returns ``a``, the fitted range, the R^2 of log P against log x there and the bend: ``a``
    over the upper half of the range minus ``a`` over the lower half (0 for a power law; a
    log-normal steepens, by about 0.85 over the decade above its 90th percentile at a log-std
    of 1, 1.3 at 0.7). The survival function is read at 20 log-spaced points per decade; a range that
    reaches past the largest value is an error.
    """
    x = np.sort(np.asarray(eps, dtype=np.float64).ravel())
    lo = float(np.quantile(x, start_quantile))
    hi = lo * 10.0**decades
    if not lo > 0 or hi >= x[-1]:
        raise ValueError(f"the tail {lo:.3g}..{hi:.3g} is empty or runs past the largest value {x[-1]:.3g}")
    pts = np.geomspace(lo, hi, int(round(20 * decades)) + 1)
    surv = 1.0 - np.searchsorted(x, pts, side="right") / x.size
    lx, ly = np.log10(pts), np.log10(surv)
    slope, icpt = np.polyfit(lx, ly, 1)
    ss_res = float(((ly - (slope * lx + icpt)) ** 2).sum())
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    mid = lx.size // 2
    bend = np.polyfit(lx[: mid + 1], ly[: mid + 1], 1)[0] - np.polyfit(lx[mid:], ly[mid:], 1)[0]
    return -float(slope), (lo, hi), 1.0 - ss_res / max(ss_tot, 1e-300), float(bend)


def deformation_pdf(
    eps: np.ndarray,
    *,
    below: Sequence[float] = (RIGID_PER_DAY,),
    above: Sequence[float] = (0.01, 0.03, 0.1),
    tail_start: float = 0.9,
    tail_decades: float = 1.0,
    bins_per_decade: int = 10,
) -> DeformationPdf:
    """PDF statistics of grid-scale total deformation ``eps`` (1/day, e.g. :func:`grid_deformation`)."""
    x = np.asarray(eps, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("no deformation values (is the pack empty?)")
    a, rng, r2, bend = survival_tail(x, tail_start, tail_decades)
    pos = x[x > 0]
    lo, hi = np.log10(pos.min()), np.log10(pos.max())
    edges = 10.0 ** np.arange(np.floor(lo), np.ceil(hi) + 1e-9, 1.0 / bins_per_decade)
    hist, edges = np.histogram(pos, bins=edges)
    density = hist / (x.size * np.diff(edges))
    return DeformationPdf(
        count=int(x.size),
        median=float(np.median(x)),
        share_below={float(t): float((x < t).mean()) for t in below},
        share_above={float(t): float((x > t).mean()) for t in above},
        tail_exponent=a,
        tail_range=rng,
        tail_r2=r2,
        tail_bend=bend,
        bin_edges=edges,
        density=density,
    )
