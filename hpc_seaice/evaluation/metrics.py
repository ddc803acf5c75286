"""Scores that compare generated sea-ice states with reference states (PAPER_NOTES section 4).

Every spatial average is a *masked* mean over ocean cells (DESIGN section 1): land cells carry no
information and would otherwise dilute every score by about half. Functions take numpy arrays
with the grid in the last two axes ``[..., H, W]`` and a mask ``[H, W]`` (1 = ocean);
:func:`crps_ensemble` also accepts torch tensors.

Units: velocities in m/s, grid spacings in m, so :func:`total_deformation` and
:func:`divergence` are in 1/s (multiply by 86400 for the per-day values usually plotted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpc_seaice.data.variables import ICE_COVER_THRESHOLD, MIZ_RANGE

SECONDS_PER_DAY = 86400.0


# --------------------------------------------------------------------------------------------
# Ensemble CRPS
# --------------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def ensemble_spread_term(ensemble: Any, axis: int = 0, fair: bool = False) -> Any:
    """The spread half of the ensemble CRPS, ``0.5 E|X - X'|``, per element.

    Computed from the sorted members in O(m log m) (Hersbach 2000, eq. 20; the form of the
    authors' ``estimate_crps_ens``): with members sorted ``x_(1) <= ... <= x_(m)``,
    ``sum_{i<j} (x_(j) - x_(i)) = sum_k k (m - k) (x_(k+1) - x_(k))``. The standard estimator
    divides by ``m^2`` (the ensemble's empirical distribution), the fair one by ``m (m - 1)``
    (unbiased for the CRPS of the distribution the members were drawn from; Ferro 2014).

    It does not depend on the observation, so an evaluation scoring one ensemble against many
    reference states computes it once (``crps = mean|x_i - y| - spread``).
    """
    if _is_torch(ensemble):
        import torch

        x = torch.movedim(ensemble, axis, 0)
        m = x.shape[0]
        if fair and m < 2:
            raise ValueError("the fair CRPS needs at least two ensemble members")
        x = torch.sort(x, dim=0).values
        k = torch.arange(1, m, device=x.device, dtype=x.dtype)
        weight = (k * (m - k)).reshape((m - 1,) + (1,) * (x.dim() - 1))
        total = (weight * (x[1:] - x[:-1])).sum(dim=0)
    else:
        x = np.moveaxis(np.asarray(ensemble), axis, 0)
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        m = x.shape[0]
        if fair and m < 2:
            raise ValueError("the fair CRPS needs at least two ensemble members")
        x = np.sort(x, axis=0)
        k = np.arange(1, m, dtype=x.dtype)
        weight = (k * (m - k)).reshape((m - 1,) + (1,) * (x.ndim - 1))
        total = (weight * np.diff(x, axis=0)).sum(axis=0)
    return total / (m * (m - 1) if fair else m * m)


def crps_ensemble(ensemble: Any, obs: Any, axis: int = 0, fair: bool = False) -> Any:
    """Continuous ranked probability score of an ensemble against observations, per element.

    ``CRPS = E|X - y| - 0.5 E|X - X'|`` with X, X' independent draws from the ensemble
    (Gneiting & Raftery 2007, eq. 21; the Hersbach 2000 / Pyro form the authors use). With
    ``fair=True`` the second expectation excludes the pairs (i, i): ``1/(m (m - 1))`` instead of
    ``1/m^2``, which removes the finite-ensemble penalty so that ensembles of different sizes
    are comparable.

    Args:
        ensemble: members along ``axis``; numpy array or torch tensor.
        obs: observations, broadcastable to ``ensemble`` with ``axis`` removed.
        axis: the member axis of ``ensemble``.
        fair: use the fair (unbiased) estimator.

    Returns:
        CRPS per element, the shape of ``ensemble`` without ``axis`` (broadcast with ``obs``),
        in the units of the data.
    """
    spread = ensemble_spread_term(ensemble, axis=axis, fair=fair)
    if _is_torch(ensemble):
        import torch

        x = torch.movedim(ensemble, axis, 0)
        y = torch.as_tensor(obs, dtype=x.dtype, device=x.device)
        return (x - y).abs().mean(dim=0) - spread
    x = np.moveaxis(np.asarray(ensemble), axis, 0)
    y = np.asarray(obs)
    return np.abs(x - y).mean(axis=0) - spread


# --------------------------------------------------------------------------------------------
# Masked means, RMSE, bias
# --------------------------------------------------------------------------------------------


def ocean_mask(mask: np.ndarray) -> np.ndarray:
    """Boolean ocean mask from a 0/1 (float or int) mask; 1 = ocean."""
    return np.asarray(mask) > 0.5


def masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the ocean cells of the last two axes: ``[..., H, W] -> [...]``."""
    ocean = ocean_mask(mask)
    count = int(ocean.sum())
    if count == 0:
        raise ValueError("the mask has no ocean cell")
    return np.where(ocean, np.asarray(x, dtype=np.float64), 0.0).sum(axis=(-2, -1)) / count


def rmse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Root of the masked mean squared difference over the grid: ``[..., H, W] -> [...]``."""
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return np.sqrt(masked_mean(diff**2, mask))


def bias(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean of ``pred - target`` over the grid: ``[..., H, W] -> [...]``."""
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return masked_mean(diff, mask)


def fraction_out_of_bounds(
    fields: np.ndarray,
    lower: Sequence[float],
    upper: Sequence[float],
    mask: np.ndarray,
) -> np.ndarray:
    """Fraction of ocean values outside the physical bounds, per channel.

    Args:
        fields: ``[..., C, H, W]`` physical values (before clipping, to measure how often a
            model leaves the physical range; after clipping it is zero by construction).
        lower, upper: bounds per channel, +-inf where unbounded.
        mask: ``[H, W]``, 1 = ocean.

    Returns:
        ``[C]`` fractions in [0, 1]. A NaN counts as out of bounds (it is not a valid value).
    """
    x = np.asarray(fields)
    lo = np.asarray(lower, dtype=np.float64).reshape(-1, 1, 1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1, 1, 1)
    if lo.shape[0] != x.shape[-3] or hi.shape[0] != x.shape[-3]:
        raise ValueError(f"{lo.shape[0]} bounds for {x.shape[-3]} channels")
    ocean = ocean_mask(mask)
    outside = ~((x >= lo) & (x <= hi)) & ocean
    lead = tuple(range(x.ndim - 3))
    count = outside.sum(axis=lead + (-2, -1))
    total = int(ocean.sum()) * int(np.prod([x.shape[i] for i in lead], dtype=np.int64))
    return count / max(total, 1)


# --------------------------------------------------------------------------------------------
# Ice cover, calibration, marginal ice zone
# --------------------------------------------------------------------------------------------


def sea_ice_cover_probability(sic: np.ndarray, threshold: float = ICE_COVER_THRESHOLD) -> np.ndarray:
    """Per-cell probability of being ice-covered (``sic >= threshold``): ``[N, H, W] -> [H, W]``."""
    return (np.asarray(sic) >= threshold).mean(axis=0)


@dataclass
class CoverCalibration:
    """Generated vs reference ice-cover probability, grouped by the reference probability.

    The paper's Fig 4: ocean cells are put into bins of their reference (test) probability; a
    calibrated generator has, in every bin, a mean generated probability equal to the bin's
    mean reference probability (the diagonal). Empty bins hold NaN.
    """

    bin_edges: np.ndarray  # [B + 1]
    mean_test: np.ndarray  # [B] mean reference probability of the cells in the bin
    mean_generated: np.ndarray  # [B] mean generated probability of the same cells
    counts: np.ndarray  # [B] number of ocean cells in the bin

    @property
    def bin_centers(self) -> np.ndarray:
        return 0.5 * (self.bin_edges[1:] + self.bin_edges[:-1])

    @property
    def error(self) -> float:
        """Cell-weighted mean |generated - reference| over bins (an expected calibration error)."""
        used = self.counts > 0
        if not used.any():
            return float("nan")
        gap = np.abs(self.mean_generated[used] - self.mean_test[used])
        return float((gap * self.counts[used]).sum() / self.counts[used].sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "bin_edges": self.bin_edges.tolist(),
            "mean_test": _nan_to_none(self.mean_test),
            "mean_generated": _nan_to_none(self.mean_generated),
            "counts": self.counts.astype(int).tolist(),
            "error": self.error,
        }


def _nan_to_none(x: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(x, dtype=np.float64)]


def cover_calibration(
    p_test: np.ndarray, p_gen: np.ndarray, mask: np.ndarray, bin_width: float = 0.05
) -> CoverCalibration:
    """Bin ocean cells by their reference ice-cover probability (bins of ``bin_width``).

    Bins are ``[0, w), [w, 2w), ..., [1 - w, 1]`` (the last one closed so p = 1 is counted).
    """
    num_bins = int(round(1.0 / bin_width))
    if num_bins < 1 or abs(num_bins * bin_width - 1.0) > 1e-9:
        raise ValueError(f"bin_width {bin_width} does not divide [0, 1]")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    ocean = ocean_mask(mask)
    pt = np.asarray(p_test, dtype=np.float64)[ocean]
    pg = np.asarray(p_gen, dtype=np.float64)[ocean]
    idx = np.clip(np.floor(pt * num_bins + 1e-9).astype(np.int64), 0, num_bins - 1)
    counts = np.bincount(idx, minlength=num_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_test = np.bincount(idx, weights=pt, minlength=num_bins) / counts
        mean_gen = np.bincount(idx, weights=pg, minlength=num_bins) / counts
    return CoverCalibration(edges, mean_test, mean_gen, counts.astype(np.int64))


def miz_area(
    sic: np.ndarray,
    mask: np.ndarray,
    cell_area: float | np.ndarray,
    miz_range: tuple[float, float] = MIZ_RANGE,
) -> np.ndarray:
    """Marginal-ice-zone area per state: ocean cells with ``0.15 <= sic <= 0.8``.

    Args:
        sic: ``[..., H, W]`` concentration (fraction).
        mask: ``[H, W]``, 1 = ocean.
        cell_area: area of one cell (scalar or ``[H, W]``); the result has its units.

    Returns:
        ``[...]`` areas.
    """
    lo, hi = miz_range
    x = np.asarray(sic)
    inside = (x >= lo) & (x <= hi) & ocean_mask(mask)
    area = np.broadcast_to(np.asarray(cell_area, dtype=np.float64), x.shape[-2:])
    return (inside * area).sum(axis=(-2, -1))


# --------------------------------------------------------------------------------------------
# Kinematics
# --------------------------------------------------------------------------------------------


def speed(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Ice speed sqrt(u^2 + v^2), in the units of u and v."""
    return np.hypot(np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64))


def _gradients(u: np.ndarray, v: np.ndarray, dx: float, dy: float) -> tuple[np.ndarray, ...]:
    # Axis -2 is y (rows), axis -1 is x (columns); np.gradient uses centred differences inside
    # and one-sided differences on the grid border.
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    du_dy, du_dx = np.gradient(u, dy, dx, axis=(-2, -1))
    dv_dy, dv_dx = np.gradient(v, dy, dx, axis=(-2, -1))
    return du_dx, du_dy, dv_dx, dv_dy


def stencil_mask(mask: np.ndarray) -> np.ndarray:
    """Ocean cells whose four neighbours are ocean too (boolean ``[H, W]``).

    A centred difference at a coast mixes in the land value (0), which would show up as a
    spurious deformation line along every coast; only these cells have a clean stencil.
    Neighbours outside the grid count as ocean (np.gradient goes one-sided there).
    """
    ocean = ocean_mask(mask)
    padded = np.pad(ocean, 1, constant_values=True)
    return ocean & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def total_deformation(
    u: np.ndarray,
    v: np.ndarray,
    dx: float,
    dy: float,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Total deformation sqrt((du/dx - dv/dy)^2 + (du/dy + dv/dx)^2) in 1/s.

    The root of the squared stretching and shearing deformation rates, i.e. the maximum shear
    rate; it is invariant to rotations of the axes and to the orientation of y, so it does not
    matter whether the grid rows run north or south. Centred differences on the grid spacing
    ``dx``, ``dy`` (m) with velocities ``u``, ``v`` ``[..., H, W]`` in m/s. With a ``mask``,
    cells without a clean ocean stencil (:func:`stencil_mask`) are NaN.
    """
    du_dx, du_dy, dv_dx, dv_dy = _gradients(u, v, dx, dy)
    out = np.hypot(du_dx - dv_dy, du_dy + dv_dx)
    if mask is not None:
        out = np.where(stencil_mask(mask), out, np.nan)
    return out


def divergence(
    u: np.ndarray,
    v: np.ndarray,
    dx: float,
    dy: float,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Divergence du/dx + dv/dy in 1/s (centred differences; NaN off-stencil with a mask)."""
    du_dx, _, _, dv_dy = _gradients(u, v, dx, dy)
    out = du_dx + dv_dy
    if mask is not None:
        out = np.where(stencil_mask(mask), out, np.nan)
    return out
