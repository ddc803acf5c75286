"""Bootstrap replicates of every evaluation score, all sources resampled together (vectorised).

The method is :mod:`.bootstrap`'s (percentile intervals at 95 %, generated samples and reference
states resampled with replacement, a fixed seed, pairs of distinct members in the CRPS spread):
here it is applied to every score of every source at once. A replicate is a pair of count
vectors, ``w`` over a source's samples and ``v`` over the reference states (how often each is
drawn); every score below is written as a function of ``(w, v)`` on whole stacks of replicates,
``[R, N]`` and ``[R, T]``, so a thousand replicates of a hundred scores take seconds, not the
hours a Python loop per score would. All-ones weights give the score of the full sets (tested:
equal to the full-grid score wherever the cell sample is the whole ocean).

Why one draw for everything: the reference-state draws ``v`` are shared by every source, so the
replicates of two models' scores are *paired* (the shared state-to-state variation cancels in a
difference or a ratio), and the difference of any two scores is bootstrapped by subtracting
their replicate arrays. The sample draws depend only on the number of samples (one stream per
count): a score must not depend on a model's name or on which other models are evaluated, so
the same file gives the same intervals under any name and beside any other files. Two models'
samples are independent, so resampling them with the same index pattern is still resampling each
of them uniformly.

Scores at the cell sample (per-cell climatology and calibration): on grids with more ocean cells
than :data:`.context.CELL_SAMPLE` the replicates are computed on the cell sample and the interval
is moved to the full-grid estimate (``estimate + quantile(replicate - sample estimate)``, the
sampling spread of the score measured on a fixed random set of cells); elsewhere it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hpc_seaice.evaluation.bootstrap import DEFAULT_BOOT, DEFAULT_SEED, LEVEL, Interval

CHUNK = 100  # replicates per vectorised block (bounds the working memory of the cell-sample scores)
NUM_BINS = 20  # the 5 % bins of the ice-cover calibration


@dataclass
class Draws:
    """Count vectors of every replicate: ``states [B, T]`` shared, ``samples[source] [B, N]``."""

    states: np.ndarray
    samples: dict[str, np.ndarray]

    @property
    def n_boot(self) -> int:
        return self.states.shape[0]


def _counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    idx = rng.integers(0, n, size=(n_boot, n))
    out = np.zeros((n_boot, n))
    np.add.at(out, (np.arange(n_boot)[:, None], idx), 1.0)
    return out


def sample_seed(seed: int, num_samples: int) -> np.random.SeedSequence:
    """The stream of the sample draws of every source with ``num_samples`` samples."""
    return np.random.SeedSequence([seed, 1, num_samples])


def draw(n_states: int, sample_counts: dict[str, int], n_boot: int = DEFAULT_BOOT, seed: int = DEFAULT_SEED) -> Draws:
    """Replicate counts for ``n_states`` reference states and each source's ``sample_counts[name]`` samples."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    states = _counts(np.random.default_rng(np.random.SeedSequence([seed, 0])), n_states, n_boot)
    by_count = {n: _counts(np.random.default_rng(sample_seed(seed, n)), n, n_boot) for n in set(sample_counts.values())}
    samples = {name: by_count[n] for name, n in sample_counts.items()}
    return Draws(states, samples)


def interval(estimate: float, reps: np.ndarray, level: float = LEVEL, centre: float | None = None) -> Interval:
    """Percentile interval of ``reps``; with ``centre`` (the replicates' own full-set value), moved to ``estimate``."""
    reps = np.asarray(reps, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0 or not np.isfinite(estimate):
        return Interval(float(estimate), float("nan"), float("nan"), level)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(reps, [tail, 100.0 - tail])
    shift = 0.0 if centre is None else float(estimate) - float(centre)
    return Interval(float(estimate), float(low) + shift, float(high) + shift, level)


# --------------------------------------------------------------------------------------------
# Scores as functions of count vectors (rows = replicates)
# --------------------------------------------------------------------------------------------


def wmean(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Weighted means over the first axis of ``x [N, ...]``: ``[R, ...]``."""
    flat = x.reshape(x.shape[0], -1)
    return ((w @ flat) / w.sum(axis=1, keepdims=True)).reshape((w.shape[0], *x.shape[1:]))


def crps(w: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray, fair: bool = False) -> np.ndarray:
    """Cell-mean CRPS ``[R]`` from the parts ``a [N, T]`` (mean |x_j - y_t|) and ``b [N, N]`` (mean |x_j - x_k|).

    Pairs of positions holding the same original member are left out of the spread average (a
    repeated member is not a new one, :func:`.bootstrap.pair_mean` with ``distinct=True``); with
    all-ones weights this is exactly the standard (or fair) ensemble CRPS.
    """
    m = w.sum(axis=1)
    obs = ((w @ a) * v).sum(axis=1) / (m * v.sum(axis=1))
    return obs - 0.5 * pair_mean(w, b, fair)


def pair_mean(w: np.ndarray, b: np.ndarray, fair: bool = False) -> np.ndarray:
    """``[R]``: :func:`.bootstrap.pair_mean` with ``distinct=True`` of ``b [N, N]`` for every row of counts."""
    m = w.sum(axis=1)
    diag = np.diagonal(b)
    total = ((w @ b) * w).sum(axis=1)
    pairs = m * m - (w * w).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.where(pairs > 0, (total - (w * w) @ diag) / pairs, 0.0)
    return off if fair else ((m - 1.0) * off + (w @ diag) / m) / m


def variogram(w: np.ndarray, v: np.ndarray, score: Any, c: int | None) -> np.ndarray:
    """``[R]``: the variogram score of variable ``c`` (``None``: mean over variables) from its exact parts.

    ``score`` is a :class:`.spatial.VariogramScore`: per variable ``S [T]``, ``G [N, T]``, ``H [N, N]``
    and the score of members J against the states is ``mean_t S - 2 mean_{j, t} G + mean_{j, k} H``.
    """
    variables = range(score.num_variables) if c is None else [c]
    total = np.zeros(w.shape[0])
    for k in variables:
        s, g, h = score._parts(k)  # noqa: SLF001 (the exact parts; see the module docstring of .spatial)
        vs = v.sum(axis=1)
        total += (v @ s) / vs - 2.0 * ((w @ g) * v).sum(axis=1) / (w.sum(axis=1) * vs) + pair_mean(w, h)
    return total / len(variables)


def log_ratio_rings(w: np.ndarray, v: np.ndarray, psd: np.ndarray, ref: np.ndarray, rings: np.ndarray) -> np.ndarray:
    """Mean over the selected rings of log10(PSD of the resampled fields / PSD of the resampled states)."""
    if not rings.any():
        return np.full(w.shape[0], np.nan)
    gen, obs = wmean(w, psd[:, rings]), wmean(v, ref[:, rings])
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(gen / obs)
    logs = np.where((gen > 0) & (obs > 0), logs, np.nan)
    return np.nanmean(logs, axis=1) if np.isfinite(logs).any() else np.full(w.shape[0], np.nan)


def wasserstein(w: np.ndarray, v: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between the weighted empirical laws of ``x [N]`` and ``y [T]``: ``[R]``.

    The integral of |F - G| over the sorted union of the values, with both CDFs from the counts.
    """
    z = np.concatenate([x, y])
    order = np.argsort(z, kind="stable")
    gaps = np.diff(z[order])
    wx = np.concatenate([w / w.sum(axis=1, keepdims=True), np.zeros((w.shape[0], y.size))], axis=1)[:, order]
    wy = np.concatenate([np.zeros((v.shape[0], x.size)), v / v.sum(axis=1, keepdims=True)], axis=1)[:, order]
    cdf_gap = np.abs(np.cumsum(wx, axis=1) - np.cumsum(wy, axis=1))[:, :-1]
    return cdf_gap @ gaps


def aggregate_crps(w: np.ndarray, v: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of the values ``x [N]`` as an ensemble for each of ``y [T]``, averaged over states: ``[R]``."""
    return crps(w, v, np.abs(x[:, None] - y[None, :]), np.abs(x[:, None] - x[None, :]))


def climatology_scores(w: np.ndarray, v: np.ndarray, gen: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """RMSE and bias of the generated mean and std fields against the reference's, over cells: ``[R]`` each.

    ``gen [N, S]`` and ``ref [T, S]`` are one variable at the cell sample; stds are population stds
    (as :class:`.reference.RunningMoments` and ``numpy.std``).
    """
    gm, rm = wmean(w, gen), wmean(v, ref)
    gs = np.sqrt(np.maximum(wmean(w, gen * gen) - gm * gm, 0.0))
    rs = np.sqrt(np.maximum(wmean(v, ref * ref) - rm * rm, 0.0))
    return {
        "mean_rmse": np.sqrt(((gm - rm) ** 2).mean(axis=1)),
        "mean_bias": (gm - rm).mean(axis=1),
        "std_rmse": np.sqrt(((gs - rs) ** 2).mean(axis=1)),
        "std_bias": (gs - rs).mean(axis=1),
    }


def calibration_scores(w: np.ndarray, v: np.ndarray, gen: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """The three ice-cover calibration errors of :mod:`.calibration`, from cover indicators ``[N, S]``, ``[T, S]``.

    Cell-weighted error = sum over bins |sum of (p_gen - p_test) over the bin's cells| / cells;
    unweighted = the mean over non-empty bins of that gap per cell; partial = mean |p_gen - p_test|
    over the cells with 0 < p_test < 1.
    """
    pg, pt = wmean(w, gen), wmean(v, ref)
    r, s = pt.shape
    bins = np.clip(np.floor(pt * NUM_BINS + 1e-9).astype(np.int64), 0, NUM_BINS - 1) + NUM_BINS * np.arange(r)[:, None]
    gap = np.bincount(bins.ravel(), weights=(pg - pt).ravel(), minlength=r * NUM_BINS).reshape(r, NUM_BINS)
    count = np.bincount(bins.ravel(), minlength=r * NUM_BINS).reshape(r, NUM_BINS)
    used = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_bin = np.where(used, np.abs(gap) / np.maximum(count, 1), 0.0)
        partial_cells = (pt > 0) & (pt < 1)
        partial = np.where(partial_cells, np.abs(pg - pt), 0.0).sum(axis=1) / partial_cells.sum(axis=1)
    return {
        "error": np.abs(gap).sum(axis=1) / s,
        "unweighted_error": per_bin.sum(axis=1) / used.sum(axis=1),
        "partial_error": partial,
    }


def chunked(w: np.ndarray, v: np.ndarray, fn, *args) -> dict[str, np.ndarray]:
    """``fn(w, v, *args) -> {key: [R]}`` over blocks of :data:`CHUNK` replicates, concatenated."""
    parts: dict[str, list[np.ndarray]] = {}
    for lo in range(0, w.shape[0], CHUNK):
        for key, value in fn(w[lo : lo + CHUNK], v[lo : lo + CHUNK], *args).items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(values) for key, values in parts.items()}
