"""Scores of an ensemble forecast at one lead time against the true state, and the rank histogram.

Why these: a forecast is judged on how close its members are to what happened (RMSE of the
ensemble mean, CRPS) and on whether its spread tells how far off it is (spread-skill ratio, rank
histogram). The same function scores the forecast and the baselines (persistence, climatology:
one-member ensembles), so a skill score compares like with like: for one member the CRPS is
the mean absolute error and the spread is undefined.

Definitions, per variable over the ocean cells ``p`` of the mask (land never counts), for ``M``
members ``x_jp`` and the truth ``y_p``:

- RMSE of the ensemble mean: ``sqrt(mean_p (xbar_p - y_p)^2)`` (:func:`metrics.rmse`); bias:
  ``mean_p (xbar_p - y_p)``;
- CRPS: ``mean_p CRPS(x_.p, y_p)`` with the project's ensemble CRPS (:func:`metrics.crps_ensemble`,
  the standard estimator; ``crps_fair``: the fair one, M >= 2);
- spread: ``sqrt(mean_p s_p^2)``, ``s_p^2`` the unbiased ensemble variance (``1/(M-1) sum_j
  (x_jp - xbar_p)^2``);
- spread-skill ratio: ``sqrt((M+1)/M) * spread / RMSE``. For members and truth drawn from one
  distribution, ``E (xbar - y)^2 = (M+1)/M * E s^2`` (Fortin et al. 2014), so the ratio is 1 for
  a reliable ensemble of any size, < 1 under-dispersive, > 1 over-dispersive. Spread and
  error are averaged as squares over cells before the root; over several leads likewise
  (:func:`pooled_spread_skill`);
- skill against a baseline: ``1 - RMSE / RMSE_baseline`` (1 perfect, 0 as good as the
  baseline, < 0 worse); ``1 - CRPS / CRPS_baseline`` likewise. Undefined (None) where the
  baseline's score is 0 (e.g. persistence at lead 0).

Rank histogram (Hamill 2001): at each ocean cell and lead the rank of the truth among the
members, ``#{x_j < y}`` plus a uniform draw among the members equal to ``y`` (ties are common:
concentration at 0 and 1, thickness at 0; without the draw a perfect forecast would put every
tie in the first bin), ``M + 1`` bins pooled over cells and leads. Flatness summaries:

- ``reliability_index``: ``sum_k |f_k - 1/(M+1)|`` (Delle Monache et al. 2006), 0 = flat;
- ``outer_ratio``: ``(f_0 + f_M) (M+1) / 2``, the two outer bins' share over a flat
  histogram's: 1 flat, > 1 U-shaped (under-dispersive, or biased), < 1 dome (over-dispersive);
- ``mean_rank``: the mean rank over M, minus 1/2: 0 centred, > 0 the truth tends to lie above
  the members (the forecast is too low), < 0 below.

Cells are spatially correlated, so a chi-square test of flatness with every cell as an
independent draw would reject almost any real forecast; the summaries are descriptive.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.evaluation.aggregates import AGGREGATES, aggregate_crps, state_aggregates
from hpc_seaice.evaluation.context import CH
from hpc_seaice.evaluation.metrics import bias, crps_ensemble, masked_mean, rmse

RANK_SEED = 0


def score_ensemble(members: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Per variable: RMSE and bias of the ensemble mean, CRPS (standard, fair), spread, spread-skill ratio.

    Args:
        members: ``[M, C, H, W]`` physical values (``M = 1``: a deterministic forecast or a baseline).
        truth: ``[C, H, W]``.
        mask: ``[H, W]``, 1 = ocean.
    """
    x = np.asarray(members, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    m = x.shape[0]
    mean = x.mean(axis=0)
    out: dict[str, dict[str, float | None]] = {}
    rmse_c = rmse(mean, y, mask)
    bias_c = bias(mean, y, mask)
    crps_c = masked_mean(crps_ensemble(x, y, axis=0), mask)
    crps_fair_c = masked_mean(crps_ensemble(x, y, axis=0, fair=True), mask) if m > 1 else None
    spread_c = np.sqrt(masked_mean(x.var(axis=0, ddof=1), mask)) if m > 1 else None
    for c, var in enumerate(VARIABLES):
        spread = None if spread_c is None else float(spread_c[c])
        out[var] = {
            "rmse": float(rmse_c[c]),
            "bias": float(bias_c[c]),
            "crps": float(crps_c[c]),
            "crps_fair": None if crps_fair_c is None else float(crps_fair_c[c]),
            "spread": spread,
            "spread_skill": spread_skill(spread, float(rmse_c[c]), m),
        }
    return out


def spread_skill(spread: float | None, rmse_value: float, members: int) -> float | None:
    """``sqrt((M+1)/M) * spread / RMSE``; None for one member or a zero RMSE."""
    if spread is None or members < 2 or not rmse_value > 0:
        return None
    return float(np.sqrt((members + 1) / members) * spread / rmse_value)


def pooled_spread_skill(spreads: list[float | None], rmses: list[float], members: int) -> float | None:
    """The spread-skill ratio over several leads: mean variance over mean squared error, then the root."""
    if members < 2 or any(s is None for s in spreads) or not rmses:
        return None
    mse = float(np.mean(np.square(rmses)))
    if not mse > 0:
        return None
    return float(np.sqrt((members + 1) / members * np.mean(np.square(spreads)) / mse))


def skill(score: float | None, baseline: float | None) -> float | None:
    """``1 - score / baseline`` (RMSE or CRPS skill score); None where the baseline scores 0."""
    if score is None or baseline is None or not baseline > 0:
        return None
    return float(1.0 - score / baseline)


class RankHistogram:
    """Counts of the truth's rank among ``members`` members, per variable, pooled over what is added."""

    def __init__(self, members: int, variables: int = len(VARIABLES), seed: int = RANK_SEED) -> None:
        self.members = members
        self.counts = np.zeros((variables, members + 1), dtype=np.int64)
        self._rng = np.random.default_rng(seed)

    def add(self, members: np.ndarray, truth: np.ndarray) -> None:
        """One lead: ``members [M, C, P]`` and ``truth [C, P]`` at the ocean cells."""
        x, y = np.asarray(members), np.asarray(truth)
        if x.shape[0] != self.members or x.shape[1:] != y.shape:
            raise ValueError(f"members {x.shape} do not match {self.members} members and truth {y.shape}")
        below = (x < y[None]).sum(axis=0)
        ties = (x == y[None]).sum(axis=0)
        ranks = below + np.floor(self._rng.random(y.shape) * (ties + 1)).astype(np.int64)
        for c in range(y.shape[0]):
            self.counts[c] += np.bincount(ranks[c].reshape(-1), minlength=self.members + 1)

    def summary(self, names: tuple[str, ...] = VARIABLES) -> dict[str, dict[str, Any]]:
        """Per variable: counts, frequencies and the flatness summaries of the module docstring."""
        out = {}
        bins = self.members + 1
        for c, name in enumerate(names):
            counts = self.counts[c]
            total = int(counts.sum())
            if total == 0:
                out[name] = {"counts": counts.tolist(), "frequencies": None}
                continue
            f = counts / total
            out[name] = {
                "counts": counts.tolist(),
                "frequencies": f.tolist(),
                "reliability_index": float(np.abs(f - 1.0 / bins).sum()),
                "outer_ratio": float((f[0] + f[-1]) * bins / 2.0),
                "mean_rank": float((np.arange(bins) @ f) / self.members - 0.5) if self.members else 0.0,
            }
        return out


def lead_aggregates(
    members: np.ndarray,
    truth: np.ndarray,
    baselines: dict[str, np.ndarray],
    mask: np.ndarray,
    cell_area_km2: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Extent, area, volume and MIZ area of every member, the truth and each baseline at one lead.

    Per aggregate (:mod:`.aggregates`' definitions and units): the members' values, their mean,
    the truth's, the error of the members' mean, the CRPS of the members as an ensemble against
    the truth (:func:`aggregates.aggregate_crps`), and each baseline's value and absolute error.
    """
    x = np.asarray(members)
    of_members = state_aggregates(x[:, CH["sit"]], x[:, CH["sic"]], mask, cell_area_km2)
    of_truth = state_aggregates(truth[CH["sit"]], truth[CH["sic"]], mask, cell_area_km2)
    of_base = {k: state_aggregates(b[CH["sit"]], b[CH["sic"]], mask, cell_area_km2) for k, b in baselines.items()}
    out: dict[str, dict[str, Any]] = {}
    for name in AGGREGATES:
        values = np.asarray(of_members[name], dtype=np.float64)
        y = float(of_truth[name])
        entry: dict[str, Any] = {
            "members": values.tolist(),
            "mean": float(values.mean()),
            "truth": y,
            "error": float(values.mean() - y),
            "crps": float(aggregate_crps(values, np.array([y]))),
        }
        for key, agg in of_base.items():
            entry[key] = float(agg[name])
            entry[f"{key}_abs_error"] = abs(float(agg[name]) - y)
        out[name] = entry
    return out
