"""Pan-Arctic aggregates per state (ice extent, area, volume, MIZ area) and their distribution scores.

Why: per-cell scores cannot tell a spatially meaningless field from a good one (a per-cell
shuffle of real states has the right marginals in every cell), but the sums over the whole
Arctic of such a field are far too steady: every state's extent is close to the climatological
mean. The aggregates are what sea-ice science reports first (NSIDC extent, PIOMAS volume), so
their distribution over states must match the test year's.

Definitions (per state, over ocean cells, each cell with its own area from
:mod:`hpc_seaice.data.geo.cell_geometry`; comparisons in float32, the stored precision, as in
:func:`metrics.miz_area` and :func:`calibration.ice_covered`):

- extent: area of the cells with ``sic >= 0.15`` [million km^2];
- area: ``sum sic x cell area`` [million km^2];
- volume: ``sum sit x cell area`` [thousand km^3]. The project's ``sit`` is the grid-cell mean
  thickness (ice volume per unit cell area): neXtSIM writes its effective thickness, which is
  divided by the concentration to get the floe thickness, and the synthetic generator builds
  ``sit = sic x floe thickness``. For data whose ``sit`` is the floe thickness, pass
  ``sit_is_cell_mean=False`` and the volume is ``sum sit x sic x cell area``;
- MIZ area: area of the cells with ``0.15 <= sic <= 0.8`` [million km^2].

Scores of one aggregate, generated values ``x`` (N samples) against reference values ``y``
(T states): the Wasserstein-1 distance between the two empirical distributions (scipy), and the
CRPS of the generated values as an ensemble forecast for each state, averaged over states
(``mean_t mean_j |x_j - y_t| - 0.5 mean_jk |x_j - x_k|``, in the aggregate's units). Both are
given with bootstrap intervals (:mod:`.bootstrap`), as is the difference of the means.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from hpc_seaice.data.format.variables import ICE_COVER_THRESHOLD, MIZ_RANGE
from hpc_seaice.evaluation.bootstrap import (
    DEFAULT_BOOT,
    DEFAULT_SEED,
    StatFn,
    bootstrap,
    crps_from_parts,
)

AGGREGATES: tuple[str, ...] = ("extent", "area", "volume", "miz_area")
UNITS: dict[str, str] = {
    "extent": "million km2",
    "area": "million km2",
    "volume": "thousand km3",
    "miz_area": "million km2",
}
MILLION_KM2 = 1e6  # km^2
THOUSAND_KM3_PER_M_KM2 = 1e6  # m x km^2 -> km^3 is / 1e3, -> thousand km^3 another / 1e3


def ocean_aggregates(
    sit: np.ndarray,
    sic: np.ndarray,
    cell_area_km2: np.ndarray,
    sit_is_cell_mean: bool = True,
) -> dict[str, np.ndarray]:
    """Aggregates of states given as their ocean cells: ``sit``, ``sic`` ``[..., P]``, areas ``[P]`` km^2.

    This is the layout the evaluation holds generated ensembles in (``N x P`` per variable).
    Returns each aggregate ``[...]`` in the units of :data:`UNITS`.
    """
    sit = np.asarray(sit)
    sic32 = np.asarray(sic, dtype=np.float32)
    area = np.asarray(cell_area_km2, dtype=np.float64)
    if sit.shape != sic32.shape or sit.shape[-1:] != area.shape:
        raise ValueError(f"sit {sit.shape}, sic {sic32.shape} and cell areas {area.shape} do not match")
    lo, hi = MIZ_RANGE
    covered = sic32 >= np.float32(ICE_COVER_THRESHOLD)
    miz = (sic32 >= np.float32(lo)) & (sic32 <= np.float32(hi))
    thickness = sit if sit_is_cell_mean else sit * np.asarray(sic, dtype=np.float64)
    return {
        "extent": (covered @ area) / MILLION_KM2,
        "area": (np.asarray(sic, dtype=np.float64) @ area) / MILLION_KM2,
        "volume": (np.asarray(thickness, dtype=np.float64) @ area) / THOUSAND_KM3_PER_M_KM2,
        "miz_area": (miz @ area) / MILLION_KM2,
    }


def state_aggregates(
    sit: np.ndarray,
    sic: np.ndarray,
    mask: np.ndarray,
    cell_area_km2: np.ndarray | float,
    sit_is_cell_mean: bool = True,
) -> dict[str, np.ndarray]:
    """Aggregates of full fields ``sit``, ``sic`` ``[..., H, W]`` over the ocean cells of ``mask`` (1 = ocean)."""
    ocean = np.asarray(mask) > 0.5
    area = np.broadcast_to(np.asarray(cell_area_km2, dtype=np.float64), ocean.shape)[ocean]
    return ocean_aggregates(np.asarray(sit)[..., ocean], np.asarray(sic)[..., ocean], area, sit_is_cell_mean)


# --------------------------------------------------------------------------------------------
# Distribution scores
# --------------------------------------------------------------------------------------------


def _1d(values: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"{what}: need at least one value, all finite")
    return x


def wasserstein1(generated: np.ndarray, reference: np.ndarray) -> float:
    """Wasserstein-1 distance between the empirical distributions (the aggregate's units)."""
    return float(wasserstein_distance(_1d(generated, "generated"), _1d(reference, "reference")))


def crps_parts(generated: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A [N, T] = |x_j - y_t|`` and ``B [N, N] = |x_j - x_k|`` of one aggregate (see :mod:`.bootstrap`)."""
    x, y = _1d(generated, "generated"), _1d(reference, "reference")
    return np.abs(x[:, None] - y[None, :]), np.abs(x[:, None] - x[None, :])


def aggregate_crps(generated: np.ndarray, reference: np.ndarray, fair: bool = False) -> float:
    """CRPS of the generated values as an ensemble, mean over the reference states."""
    return crps_from_parts(*crps_parts(generated, reference), fair=fair)


def wasserstein_stat(generated: np.ndarray, reference: np.ndarray) -> StatFn:
    """Replicate statistic of :func:`wasserstein1` for :mod:`.bootstrap`."""
    x, y = _1d(generated, "generated"), _1d(reference, "reference")
    return lambda s, t: float(wasserstein_distance(x[s], y[t]))


def crps_stat(generated: np.ndarray, reference: np.ndarray, fair: bool = False) -> StatFn:
    """Replicate statistic of :func:`aggregate_crps` (pairs of distinct members, see :mod:`.bootstrap`)."""
    a, b = crps_parts(generated, reference)
    return lambda s, t: crps_from_parts(a, b, s, t, fair=fair, distinct=True)


def mean_difference_stat(generated: np.ndarray, reference: np.ndarray) -> StatFn:
    """Replicate statistic of ``mean(generated) - mean(reference)``."""
    x, y = _1d(generated, "generated"), _1d(reference, "reference")
    return lambda s, t: float(x[s].mean() - y[t].mean())


def aggregate_scores(
    generated: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    n_boot: int = DEFAULT_BOOT,
    seed: int = DEFAULT_SEED,
) -> dict[str, dict[str, Any]]:
    """Per aggregate: means, and Wasserstein-1, CRPS and mean difference with their 95 % intervals.

    ``generated[name]`` is ``[N]`` (one value per sample), ``reference[name]`` ``[T]`` (per state).
    Each entry is JSON-ready: ``{"units", "generated_mean", "reference_mean", "wasserstein",
    "crps", "mean_difference"}`` with the intervals as :meth:`Interval.to_dict`.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in AGGREGATES:
        x, y = _1d(generated[name], f"generated {name}"), _1d(reference[name], f"reference {name}")
        n, t = x.size, y.size
        out[name] = {
            "units": UNITS[name],
            "generated_mean": float(x.mean()),
            "reference_mean": float(y.mean()),
            "wasserstein": bootstrap(wasserstein_stat(x, y), n, t, n_boot, seed).to_dict(),
            "crps": bootstrap(crps_stat(x, y), n, t, n_boot, seed).to_dict(),
            "mean_difference": bootstrap(mean_difference_stat(x, y), n, t, n_boot, seed).to_dict(),
        }
    return out
