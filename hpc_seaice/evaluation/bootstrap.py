"""95 % bootstrap intervals for the evaluation's scores, and the exact CRPS parts they resample.

Why a bootstrap: a verdict read from two numbers without their sampling noise is a coin toss
(two statistically identical 16-sample models differ in MIZ scores in about a third of pairs).
Every score is a function of two random sets, the generated samples and the reference states,
so a replicate resamples both, with replacement, and recomputes the score; the interval is the
2.5th and 97.5th percentiles of the replicates (percentile bootstrap, Efron & Tibshirani 1993,
ch. 13). The seed is fixed, so reruns give identical intervals.

Design: a score is given as ``stat_fn(sample_idx, state_idx) -> float``, computed on the
resample that those index arrays pick. The evaluation never keeps fields for this: it keeps
small per-sample / per-state summaries and ``stat_fn`` recombines them. For the ensemble CRPS
the summaries are exact (:class:`EnsembleCrps`): per variable, with X the N members and Y the
T states, ``A[j, t] = mean over ocean cells |x_j - y_t|`` and ``B[j, k] = mean over cells
|x_j - x_k|``; the cell-averaged CRPS of the members ``J`` against the states ``T'`` is
``mean_{t in T'} mean_{j in J} A[j, t] - 0.5 mean_{j, k in J} B[j, k]``, exact because the CRPS
of each cell is such a sum and averaging over cells and states is linear.

Paired differences: when two models are scored on the same test states, their difference is
bootstrapped with the state indices drawn once for both (:func:`bootstrap_joint` with
``combine=operator.sub``; a ratio with ``operator.truediv``), so the shared state-to-state
variation cancels instead of widening the interval; each model's samples are resampled
independently (they are independent).

Resamples repeat members. A repeated member is not a new member, so the pair terms of a
replicate (:func:`pair_mean` with ``distinct=True``) average only pairs of *different* original
members; with the plain average every replicate's spread would be (N - 1) / N of the estimate's
and the intervals would sit above the estimate by about spread / N.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
DEFAULT_BOOT = 1000  # replicates: the 2.5 % tails hold 25 replicates each
DEFAULT_SEED = 0
PAIR_CHUNK_BYTES = 32 << 20  # working memory of pair_mean_abs

StatFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Interval:
    """A point estimate (the score of the full sets) and its bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL

    def contains(self, value: float) -> bool:
        return bool(self.low <= value <= self.high)

    def excludes(self, value: float) -> bool:
        """The interval lies entirely on one side of ``value`` (e.g. a difference excludes 0)."""
        return not self.contains(value)

    def to_dict(self) -> dict[str, float]:
        return {"estimate": float(self.estimate), "low": float(self.low), "high": float(self.high), "level": self.level}


def percentile_interval(estimate: float, replicates: np.ndarray, level: float = LEVEL) -> Interval:
    """The ``level`` interval between the replicates' (1 - level) / 2 and (1 + level) / 2 quantiles."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return Interval(float(estimate), float("nan"), float("nan"), level)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(reps, [tail, 100.0 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def _draw(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """``[n_boot, n]`` indices drawn with replacement from ``range(n)``; ``n = 0``: empty rows."""
    return rng.integers(0, n, size=(n_boot, n)) if n > 0 else np.zeros((n_boot, 0), dtype=np.int64)


def _check(n_boot: int, level: float, counts: Sequence[int]) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if any(n < 0 for n in counts):
        raise ValueError(f"set sizes must be >= 0, got {list(counts)}")


def bootstrap_joint(
    stat_fns: Sequence[StatFn],
    n_samples: Sequence[int],
    n_states: int,
    combine: Callable[..., float],
    n_boot: int = DEFAULT_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
) -> Interval:
    """Interval of ``combine(stat_0, stat_1, ...)`` over models scored on the same states.

    Each replicate draws the state indices once for all models and each model's sample indices
    independently. ``n_samples[i] = 0`` (or ``n_states = 0``): that set is not resampled and the
    statistic receives an empty index array for it.
    """
    if len(stat_fns) != len(n_samples):
        raise ValueError(f"{len(stat_fns)} statistics for {len(n_samples)} sample counts")
    _check(n_boot, level, [*n_samples, n_states])
    # One stream per set, so a model's draws do not depend on how many models are combined.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(1 + len(stat_fns))]
    states = _draw(streams[0], n_states, n_boot)
    samples = [_draw(rng, n, n_boot) for rng, n in zip(streams[1:], n_samples)]
    everything = [np.arange(n) for n in n_samples]
    estimate = combine(*(f(idx, np.arange(n_states)) for f, idx in zip(stat_fns, everything)))
    reps = np.array(
        [combine(*(f(s[b], states[b]) for f, s in zip(stat_fns, samples))) for b in range(n_boot)],
        dtype=np.float64,
    )
    return percentile_interval(estimate, reps, level)


def bootstrap(
    stat_fn: StatFn,
    n_samples: int,
    n_states: int,
    n_boot: int = DEFAULT_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
) -> Interval:
    """Interval of one score: samples and states resampled with replacement, ``n_boot`` times."""
    return bootstrap_joint([stat_fn], [n_samples], n_states, lambda a: a, n_boot, seed, level)


# --------------------------------------------------------------------------------------------
# Pair averages over a resampled ensemble
# --------------------------------------------------------------------------------------------


def pair_mean(matrix: np.ndarray, weights: np.ndarray, fair: bool = False, distinct: bool = False) -> float:
    """Mean of ``matrix[J_a, J_b]`` over pairs of positions of a (resampled) ensemble ``J``.

    ``weights[j]`` = how often member j occurs in J (``np.bincount``); m = len(J). The standard
    form averages all m^2 pairs (a, b) (the ensemble's empirical law), the fair one the m (m - 1)
    pairs a != b (Ferro 2014). ``distinct=True`` (for bootstrap replicates): the a != b part
    counts only pairs of different original members, so that a replicate's pair term is centred
    on the full ensemble's; the standard form keeps its 1/m weight on the diagonal a = b.
    """
    w = np.asarray(weights, dtype=np.float64)
    m = float(w.sum())
    diag = np.diagonal(matrix).astype(np.float64)
    total = float(w @ matrix @ w)
    on = float(w @ diag) / m
    if distinct:
        pairs = m * m - float(w @ w)
        off = (total - float((w * w) @ diag)) / pairs if pairs > 0 else 0.0
    else:
        off = (total - float(w @ diag)) / (m * (m - 1.0)) if m > 1 else 0.0
    if fair:
        if m < 2:
            raise ValueError("a fair pair mean needs at least two ensemble members")
        return off
    return ((m - 1.0) * off + on) / m


# --------------------------------------------------------------------------------------------
# The ensemble CRPS, decomposed
# --------------------------------------------------------------------------------------------


def mean_abs_to_obs(members: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """``[N]``: mean over cells of ``|x_j - y|`` for members ``[N, P]`` and one state ``[P]`` (float64 sums)."""
    return np.abs(np.asarray(members) - np.asarray(obs)).mean(axis=-1, dtype=np.float64)


def pair_mean_abs(members: np.ndarray, chunk_bytes: int = PAIR_CHUNK_BYTES) -> np.ndarray:
    """``[N, N]``: mean over cells of ``|x_j - x_k|`` for members ``[N, P]`` (symmetric, zero diagonal).

    Costs N (N - 1) / 2 x P absolute differences, once per ensemble (at N = 64 and 131,000
    ocean cells about 0.3 G operations per variable).
    """
    x = np.asarray(members)
    n, p = x.shape
    out = np.zeros((n, n), dtype=np.float64)
    rows = max(1, chunk_bytes // max(1, p * x.itemsize))
    for j in range(n - 1):
        for lo in range(j + 1, n, rows):
            hi = min(n, lo + rows)
            out[j, lo:hi] = np.abs(x[lo:hi] - x[j]).mean(axis=-1, dtype=np.float64)
    return out + out.T


def crps_from_parts(
    a: np.ndarray,
    b: np.ndarray,
    members: np.ndarray | None = None,
    states: np.ndarray | None = None,
    fair: bool = False,
    distinct: bool = False,
) -> float:
    """Cell-mean CRPS of the members ``members`` (indices, repeats allowed) against ``states``.

    ``a`` is ``[N, T]`` (:func:`mean_abs_to_obs` per state), ``b`` is ``[N, N]``
    (:func:`pair_mean_abs`); ``None`` = all members / all states. With ``distinct=False`` it is
    exactly the mean over cells and states of ``metrics.crps_ensemble(x[members], y[states])``.
    """
    n, t = a.shape
    w = np.bincount(np.arange(n) if members is None else np.asarray(members), minlength=n).astype(np.float64)
    v = np.bincount(np.arange(t) if states is None else np.asarray(states), minlength=t).astype(np.float64)
    obs_term = float(w @ a @ v) / (w.sum() * v.sum())
    return obs_term - 0.5 * pair_mean(b, w, fair=fair, distinct=distinct)


class EnsembleCrps:
    """The exact CRPS parts of one ensemble, per variable, filled as reference states stream.

    ``ocean_members``: per variable ``[N, P]`` (ocean cells only, as ``GeneratedModel`` holds
    them). ``B`` is computed here once; :meth:`add_state` appends one column of ``A`` per state.
    """

    def __init__(self, ocean_members: Sequence[np.ndarray]) -> None:
        self.pairs = [pair_mean_abs(m) for m in ocean_members]  # per variable [N, N]
        self.num_samples = int(ocean_members[0].shape[0]) if len(ocean_members) else 0
        self._members = ocean_members
        self._columns: list[np.ndarray] = []  # per state [C, N]

    def add_state(self, obs: Sequence[np.ndarray]) -> None:
        """One reference state, per variable ``[P]`` (ocean cells, the members' order)."""
        if len(obs) != len(self._members):
            raise ValueError(f"{len(obs)} variables for an ensemble of {len(self._members)}")
        self._columns.append(np.stack([mean_abs_to_obs(m, o) for m, o in zip(self._members, obs)]))

    @property
    def num_states(self) -> int:
        return len(self._columns)

    def obs_terms(self, c: int) -> np.ndarray:
        """``A`` of variable ``c``: ``[N, T]``."""
        if not self._columns:
            raise ValueError("no reference state added")
        return np.stack([col[c] for col in self._columns], axis=1)

    def score(self, c: int, fair: bool = False) -> float:
        """Cell- and state-mean CRPS of variable ``c`` (all members, all states)."""
        return crps_from_parts(self.obs_terms(c), self.pairs[c], fair=fair)

    def stat_fn(self, c: int, fair: bool = False) -> StatFn:
        """The replicate statistic of variable ``c`` for :func:`bootstrap` (distinct pairs)."""
        a, b = self.obs_terms(c), self.pairs[c]
        return lambda members, states: crps_from_parts(a, b, members, states, fair=fair, distinct=True)

    def interval(self, c: int, fair: bool = False, n_boot: int = DEFAULT_BOOT, seed: int = DEFAULT_SEED) -> Interval:
        """95 % interval of the CRPS of variable ``c``, resampling members and states."""
        return bootstrap(self.stat_fn(c, fair), self.num_samples, self.num_states, n_boot, seed)
