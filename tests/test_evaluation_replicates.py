"""The vectorised replicates equal the scores they stand for, on every resample (independent computations)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from hpc_seaice.evaluation import replicates as R
from hpc_seaice.evaluation.bootstrap import crps_from_parts, mean_abs_to_obs, pair_mean_abs
from hpc_seaice.evaluation.calibration import cover_calibration
from hpc_seaice.evaluation.metrics import crps_ensemble


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(idx, minlength=n).astype(np.float64)[None]


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def test_crps_of_all_members_and_of_resamples(rng):
    x, y = rng.normal(size=(7, 50)), rng.normal(size=(9, 50))
    a = np.stack([mean_abs_to_obs(x, yt) for yt in y], axis=1)
    b = pair_mean_abs(x)
    full = R.crps(np.ones((1, 7)), np.ones((1, 9)), a, b)[0]
    assert full == pytest.approx(np.mean([crps_ensemble(x, yt).mean() for yt in y]), rel=1e-12)
    fair = R.crps(np.ones((1, 7)), np.ones((1, 9)), a, b, fair=True)[0]
    assert fair == pytest.approx(np.mean([crps_ensemble(x, yt, fair=True).mean() for yt in y]), rel=1e-12)
    for _ in range(5):
        s, t = rng.integers(0, 7, 7), rng.integers(0, 9, 9)
        got = R.crps(_counts(s, 7), _counts(t, 9), a, b)[0]
        assert got == pytest.approx(crps_from_parts(a, b, s, t, distinct=True), rel=1e-12)


def test_wasserstein_of_resamples_equals_scipy(rng):
    x, y = rng.normal(size=11), rng.normal(1.0, 2.0, size=8)
    for _ in range(5):
        s, t = rng.integers(0, 11, 11), rng.integers(0, 8, 8)
        got = R.wasserstein(_counts(s, 11), _counts(t, 8), x, y)[0]
        assert got == pytest.approx(wasserstein_distance(x[s], y[t]), rel=1e-10, abs=1e-12)


def test_calibration_and_climatology_with_all_members_equal_the_full_scores(rng):
    gen = (rng.random((6, 300)) < np.linspace(0, 1, 300)).astype(float)
    ref = (rng.random((10, 300)) < np.linspace(0, 1, 300) ** 2).astype(float)
    got = R.calibration_scores(np.ones((1, 6)), np.ones((1, 10)), gen, ref)
    want = cover_calibration(ref.mean(0)[None], gen.mean(0)[None], np.ones((1, 300)))
    assert got["error"][0] == pytest.approx(want.error, rel=1e-12)
    assert got["unweighted_error"][0] == pytest.approx(want.unweighted_error, rel=1e-12)
    assert got["partial_error"][0] == pytest.approx(want.partial_error, rel=1e-12)
    x, y = rng.normal(size=(6, 40)), rng.normal(size=(10, 40))
    clim = R.climatology_scores(np.ones((1, 6)), np.ones((1, 10)), x, y)
    assert clim["mean_rmse"][0] == pytest.approx(np.sqrt(((x.mean(0) - y.mean(0)) ** 2).mean()), rel=1e-12)
    assert clim["std_bias"][0] == pytest.approx((x.std(0) - y.std(0)).mean(), rel=1e-10)


def test_draws_are_fixed_and_do_not_depend_on_names_or_other_sources():
    one = R.draw(12, {"a": 5}, n_boot=50, seed=0)
    two = R.draw(12, {"b": 7, "renamed": 5}, n_boot=50, seed=0)
    assert np.array_equal(one.samples["a"], two.samples["renamed"]) and np.array_equal(one.states, two.states)
    assert np.all(one.states.sum(axis=1) == 12) and np.all(two.samples["b"].sum(axis=1) == 7)
    assert not np.array_equal(R.draw(12, {"a": 5}, 50, seed=1).states, one.states)


def test_moved_interval_keeps_the_spread_and_centres_on_the_estimate():
    reps = np.linspace(0.0, 2.0, 1001)
    plain = R.interval(1.0, reps)
    moved = R.interval(3.0, reps, centre=1.0)
    assert moved.high - moved.low == pytest.approx(plain.high - plain.low)
    assert moved.low == pytest.approx(plain.low + 2.0)


def test_variogram_replicates_equal_the_instrument(rng):
    from hpc_seaice.evaluation.spatial import VariogramScore, coarse_grid

    mask = np.ones((16, 16))
    mask[:3, :3] = 0
    ocean = mask > 0.5
    members = [rng.normal(size=(6, int(ocean.sum()))) for _ in range(2)]
    score = VariogramScore(members, coarse_grid(mask, block=2), [1.0, 2.0])
    for _ in range(8):
        score.add_state([rng.normal(size=int(ocean.sum())) for _ in range(2)])
    assert R.variogram(np.ones((1, 6)), np.ones((1, 8)), score, None)[0] == pytest.approx(score.score(), rel=1e-12)
    stat = score.stat_fn(0)
    for _ in range(4):
        s, t = rng.integers(0, 6, 6), rng.integers(0, 8, 8)
        assert R.variogram(_counts(s, 6), _counts(t, 8), score, 0)[0] == pytest.approx(stat(s, t), rel=1e-12)
