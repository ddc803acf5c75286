"""Scores that compare generated sea-ice states with reference states.

Every spatial average is a *masked* mean over ocean cells: land cells carry no
information and would otherwise dilute every score by about half. Functions take numpy arrays
with the grid in the last two axes ``[..., H, W]`` and a mask ``[H, W]`` (1 = ocean);
:func:`crps_ensemble` also accepts torch tensors.

Kinematics (divergence, shear, total deformation) are in :mod:`hpc_seaice.data.geo.deformation` (the
generator needs them too) and re-exported here, as the public API names them;
the ice-cover calibration in :mod:`hpc_seaice.evaluation.calibration`, the plateau shares in
:mod:`hpc_seaice.evaluation.plateaus`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from hpc_seaice.data.format.variables import MIZ_RANGE
from hpc_seaice.data.geo.deformation import divergence, shear, total_deformation  # noqa: F401 (public API)

# --------------------------------------------------------------------------------------------
# Ensemble CRPS
# --------------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def ensemble_spread_term(ensemble: npt.ArrayLike, axis: int = 0, fair: bool = False) -> np.ndarray:
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


def crps_ensemble(ensemble: npt.ArrayLike, obs: npt.ArrayLike, axis: int = 0, fair: bool = False) -> np.ndarray:
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
# Marginal ice zone (ice-cover calibration: evaluation/calibration.py)
# --------------------------------------------------------------------------------------------


def miz_area(
    sic: np.ndarray,
    mask: np.ndarray,
    cell_area: float | np.ndarray,
    miz_range: tuple[float, float] = MIZ_RANGE,
) -> np.ndarray:
    """Marginal-ice-zone area per state: ocean cells with ``0.15 <= sic <= 0.8``.

    The bounds are applied in float32, the precision the data are stored in: a value stored as
    ``float32(0.8)`` is 0.80000001 in float64, so a reference read as float64 and a sample read as
    float32 would otherwise put the same stored value on different sides of the bound.

    Args:
        sic: ``[..., H, W]`` concentration (fraction).
        mask: ``[H, W]``, 1 = ocean.
        cell_area: area of each cell ``[H, W]`` (the grid's cells are not equal; see
            :mod:`hpc_seaice.data.geo.cell_geometry`) or one scalar; the result has its units.

    Returns:
        ``[...]`` areas.
    """
    lo, hi = miz_range
    x = np.asarray(sic, dtype=np.float32)
    inside = (x >= np.float32(lo)) & (x <= np.float32(hi)) & ocean_mask(mask)
    area = np.broadcast_to(np.asarray(cell_area, dtype=np.float64), x.shape[-2:])
    return (inside * area).sum(axis=(-2, -1))
