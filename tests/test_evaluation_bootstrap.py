"""Bootstrap intervals: coverage on a known case, reproducibility, pairing, and the exact CRPS parts."""

from __future__ import annotations

import operator

import numpy as np
import pytest

from hpc_seaice.evaluation import bootstrap as B
from hpc_seaice.evaluation import metrics as M


def test_interval_of_a_gaussian_mean_covers_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    experiments, n = 300, 100
    covered = 0
    for e in range(experiments):
        x = rng.normal(2.0, 3.0, size=n)
        interval = B.bootstrap(lambda _, states, x=x: float(x[states].mean()), 0, n, n_boot=400, seed=e)
        covered += interval.contains(2.0)
    # Binomial(300, 0.95): std 1.26 %; three std either side (the percentile interval of a
    # mean undercovers by about (1 - 1/n), well inside this).
    share = covered / experiments
    assert 0.95 - 3 * 0.0126 <= share <= 0.95 + 3 * 0.0126, share


def test_interval_width_matches_the_standard_error():
    x = np.random.default_rng(1).normal(0.0, 1.0, size=400)
    interval = B.bootstrap(lambda _, s: float(x[s].mean()), 0, x.size, n_boot=2000, seed=0)
    # 95 % normal interval: +-1.96 sigma / sqrt(n) = +-0.098
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * x.std() / np.sqrt(x.size), rel=0.1)
    assert interval.estimate == pytest.approx(x.mean())


def test_reruns_are_identical_and_seeds_differ():
    x = np.random.default_rng(2).normal(size=(20, 30))

    def stat(samples, states):
        return float(x[np.ix_(samples, states)].mean())

    first = B.bootstrap(stat, 20, 30, n_boot=200, seed=5)
    assert B.bootstrap(stat, 20, 30, n_boot=200, seed=5) == first
    assert B.bootstrap(stat, 20, 30, n_boot=200, seed=6) != first
    assert first.to_dict() == {"estimate": first.estimate, "low": first.low, "high": first.high, "level": 0.95}


def test_both_sets_are_resampled():
    # A score that depends on the samples only has a non-zero width only if samples are resampled.
    x = np.arange(10.0)
    only_samples = B.bootstrap(lambda s, _: float(x[s].mean()), 10, 7, n_boot=200)
    assert only_samples.high > only_samples.low
    only_states = B.bootstrap(lambda s, t: float(x[t].mean()), 3, 10, n_boot=200)
    assert only_states.high > only_states.low


def test_paired_difference_cancels_the_shared_state_noise():
    rng = np.random.default_rng(3)
    states = rng.normal(0.0, 10.0, size=200)  # large state-to-state variation shared by both models
    a = states + 0.3 + rng.normal(0.0, 0.1, size=200)  # model a is 0.3 worse on every state
    b = states + rng.normal(0.0, 0.1, size=200)
    paired = B.bootstrap_joint(
        [lambda _, t: float(a[t].mean()), lambda _, t: float(b[t].mean())], [0, 0], 200, operator.sub, n_boot=500
    )
    assert paired.estimate == pytest.approx(0.3, abs=0.05)
    assert paired.excludes(0.0) and paired.high - paired.low < 0.1
    # Each model's own interval is as wide as the state noise: unpaired, the difference is lost in it.
    alone = B.bootstrap(lambda _, t: float(a[t].mean()), 0, 200, n_boot=500, seed=1)
    assert alone.contains(b.mean()) and (alone.high - alone.low) > 20 * (paired.high - paired.low)
    ratio = B.bootstrap_joint(
        [lambda _, t: float(a[t].mean()) + 100, lambda _, t: float(b[t].mean()) + 100], [0, 0], 200, lambda x, y: x / y
    )
    assert ratio.contains((a.mean() + 100) / (b.mean() + 100))


@pytest.mark.parametrize("fair", [False, True])
def test_crps_parts_equal_the_direct_per_cell_crps(fair):
    rng = np.random.default_rng(4)
    members = rng.gamma(2.0, size=(7, 50))  # N x P (float64: the decomposition itself is exact)
    states = rng.gamma(2.0, size=(11, 50))  # T x P
    a = np.stack([B.mean_abs_to_obs(members, y) for y in states], axis=1)
    b = B.pair_mean_abs(members, chunk_bytes=64)  # several chunks per row
    direct = np.mean([M.crps_ensemble(members.astype(np.float64), y, fair=fair).mean() for y in states])
    assert B.crps_from_parts(a, b, fair=fair) == pytest.approx(direct, rel=1e-12)
    # Any resample, repeats included, is the direct CRPS of that ensemble against those states.
    j, t = np.array([0, 0, 3, 6, 6, 6]), np.array([1, 1, 2, 10])
    direct = np.mean([M.crps_ensemble(members[j].astype(np.float64), states[k], fair=fair).mean() for k in t])
    assert B.crps_from_parts(a, b, j, t, fair=fair) == pytest.approx(direct, rel=1e-12)


def test_ensemble_crps_streams_states_and_matches_the_direct_score():
    rng = np.random.default_rng(5)
    members = [rng.normal(size=(6, 40)).astype(np.float32), rng.uniform(size=(6, 40)).astype(np.float32)]
    states = [rng.normal(size=(9, 40)), rng.uniform(size=(9, 40))]
    crps = B.EnsembleCrps(members)
    for t in range(9):
        crps.add_state([states[0][t], states[1][t]])
    for c in range(2):
        direct = np.mean([M.crps_ensemble(members[c].astype(np.float64), y).mean() for y in states[c]])
        # float32 members: the pair differences are taken in float32
        assert crps.score(c) == pytest.approx(direct, rel=1e-6)
        interval = crps.interval(c, n_boot=300)
        assert interval.estimate == pytest.approx(direct, rel=1e-6)
        assert interval.low < direct < interval.high
    with pytest.raises(ValueError, match="3 variables"):
        crps.add_state([states[0][0]] * 3)


def test_replicates_are_centred_on_the_estimate_with_distinct_pairs():
    # Plain pair means shrink the spread of a resample by (N - 1) / N; distinct pairs do not.
    rng = np.random.default_rng(6)
    n = 8
    members = rng.normal(size=(n, 200))
    b = B.pair_mean_abs(members)
    full = B.pair_mean(b, np.ones(n), fair=True)
    draws = rng.integers(0, n, size=(4000, n))
    weights = [np.bincount(d, minlength=n) for d in draws]
    distinct = np.mean([B.pair_mean(b, w, fair=True, distinct=True) for w in weights])
    plain = np.mean([B.pair_mean(b, w, fair=True) for w in weights])
    assert distinct == pytest.approx(full, rel=0.01)
    assert plain == pytest.approx(full * (n - 1) / n, rel=0.01)


def test_pair_mean_standard_and_fair_on_a_hand_case():
    m = np.array([[0.0, 2.0], [2.0, 0.0]])
    assert B.pair_mean(m, np.array([1, 1])) == pytest.approx(1.0)  # (0 + 2 + 2 + 0) / 4
    assert B.pair_mean(m, np.array([1, 1]), fair=True) == pytest.approx(2.0)
    assert B.pair_mean(m, np.array([2, 0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="two ensemble members"):
        B.pair_mean(m, np.array([1, 0]), fair=True)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_boot"):
        B.bootstrap(lambda s, t: 0.0, 1, 1, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        B.bootstrap(lambda s, t: 0.0, 1, 1, level=1.5)
    with pytest.raises(ValueError, match="2 statistics for 1"):
        B.bootstrap_joint([lambda s, t: 0.0] * 2, [1], 1, lambda a, b: a)
