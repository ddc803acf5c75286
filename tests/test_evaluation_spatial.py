"""Variogram score: blocks and pairs, exact decomposition, and that it sees spatial correlation."""

from __future__ import annotations

import itertools
from operator import sub

import numpy as np
import pytest

from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.evaluation import spatial as S
from hpc_seaice.evaluation.bootstrap import bootstrap_joint


def test_block_rule_and_pairs_on_a_full_grid():
    assert [S.block_size((n, n)) for n in (32, 64, 128, 512)] == [1, 2, 4, 16]
    assert S.block_size((603, 528)) == 17
    grid = S.coarse_grid(np.ones((12, 12)), block=3, radius=1.5)
    assert grid.num_blocks == 16
    # Brute force: every pair of the 4 x 4 blocks at most 1.5 apart (sides 1, diagonals sqrt 2).
    pairs = {(a, b) for a, b in itertools.combinations(range(16), 2) if np.hypot(a // 4 - b // 4, a % 4 - b % 4) <= 1.5}
    assert {tuple(sorted(p)) for p in zip(grid.first, grid.second)} == pairs
    d = np.hypot(*(grid.centres[grid.first] - grid.centres[grid.second]).T)
    np.testing.assert_allclose(grid.weights * d, grid.weights[0] * d[0])  # w proportional to 1 / distance
    assert grid.weights.sum() == pytest.approx(1.0)


def test_block_means_over_ocean_cells_and_mostly_land_blocks_dropped():
    mask = np.ones((4, 4))
    mask[0, 0] = 0  # top-left block keeps 3 of 4 cells
    mask[2:, 2:] = 0
    mask[3, 3] = 1  # bottom-right block: 1 of 4 cells, dropped
    grid = S.coarse_grid(mask, block=2, radius=2.0)
    assert grid.num_blocks == 3
    values = np.arange(16.0).reshape(4, 4)
    means = grid.coarsen(values[mask > 0.5])
    np.testing.assert_allclose(means, [(1 + 4 + 5) / 3, (2 + 3 + 6 + 7) / 4, (8 + 9 + 12 + 13) / 4])
    with pytest.raises(ValueError, match="mostly ocean"):
        S.coarse_grid(np.diag([1, 0, 1, 0]), block=2)  # 1 ocean cell in each of two blocks


def _direct_vs(members: np.ndarray, obs: np.ndarray, grid: S.CoarseGrid, p: float) -> float:
    """The variogram score from its definition, one state at a time (independent of the decomposition)."""
    zx, zy = grid.coarsen(members), grid.coarsen(obs)
    ex = np.mean([np.abs(z[grid.first] - z[grid.second]) ** p for z in zx], axis=0)
    return float(np.mean([np.sum(grid.weights * (np.abs(z[grid.first] - z[grid.second]) ** p - ex) ** 2) for z in zy]))


def test_decomposition_equals_the_definition():
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(12, 10)) > 0.2
    grid = S.coarse_grid(mask, block=2, radius=2.5)
    members = [rng.normal(size=(6, mask.sum())), rng.gamma(2.0, size=(6, mask.sum()))]
    states = [rng.normal(size=(4, mask.sum())), rng.gamma(2.0, size=(4, mask.sum()))]
    scale = [2.0, 0.5]
    vs = S.VariogramScore(members, grid, scale)
    for t in range(4):
        vs.add_state([states[0][t], states[1][t]])
    direct = [_direct_vs(m / s, y / s, grid, 0.5) for m, y, s in zip(members, states, scale)]
    assert vs.score(0) == pytest.approx(direct[0], rel=1e-10)
    assert vs.score(1) == pytest.approx(direct[1], rel=1e-10)
    assert vs.score() == pytest.approx(np.mean(direct), rel=1e-10)
    # A resample with repeats is the definition applied to that ensemble and those states.
    j, t = np.array([0, 0, 2, 5]), np.array([3, 3, 1])
    stat = vs.stat_fn(1)
    assert stat(np.arange(6), np.arange(4)) == pytest.approx(direct[1], rel=1e-10)
    assert vs.per_state(1).shape == (4,)
    plain = _direct_vs(members[1][j] / 0.5, states[1][t] / 0.5, grid, 0.5)
    # distinct pairs: the repeated member 0 does not count as two members in the pair term
    assert stat(j, t) != pytest.approx(plain, rel=1e-6)
    assert vs.interval(n_boot=100).low <= vs.score() <= vs.interval(n_boot=100).high


def _gaussian_field(rng: np.random.Generator, n: int, size: int, length: float) -> np.ndarray:
    """``[n, size * size]`` draws of a unit-variance field with covariance exp(-r / length) (Cholesky)."""
    yy, xx = np.divmod(np.arange(size * size), size)
    r = np.hypot(yy[:, None] - yy[None, :], xx[:, None] - xx[None, :])
    chol = np.linalg.cholesky(np.exp(-r / length) + 1e-10 * np.eye(size * size))
    return rng.normal(size=(n, size * size)) @ chol.T


def test_the_true_covariance_scores_lower_than_a_wrong_one():
    rng = np.random.default_rng(1)
    size = 24
    grid = S.coarse_grid(np.ones((size, size)), block=2, radius=4.0)
    truth = _gaussian_field(rng, 40, size, length=6.0)  # the reference states
    right = _gaussian_field(rng, 30, size, length=6.0)
    wrong = _gaussian_field(rng, 30, size, length=1.5)  # same marginals N(0, 1), shorter correlation
    scores = {}
    for name, ens in (("right", right), ("wrong", wrong)):
        vs = S.VariogramScore([ens], grid, [1.0])
        for y in truth:
            vs.add_state([y])
        scores[name] = vs
    diff = bootstrap_joint([scores["wrong"].stat_fn(fair=True), scores["right"].stat_fn(fair=True)], [30, 30], 40, sub)
    assert diff.low > 0, diff


def test_real_states_beat_a_per_cell_shuffle_and_independent_noise(tiny_dataset_64):
    def split(name):
        ds = ShardedDataset(tiny_dataset_64, name, normalize=False)
        return np.stack([ds.raw(i) for i in range(len(ds))]), ds

    train, ds = split("train")
    test, _ = split("test")
    ocean = ds.static.mask > 0.5
    grid = S.coarse_grid(ocean)
    rng = np.random.default_rng(0)
    real = train[:, :, ocean]  # [N, C, P]
    shuffle = np.take_along_axis(
        real, rng.permuted(np.broadcast_to(np.arange(len(real))[:, None, None], real.shape), axis=0), axis=0
    )
    np.testing.assert_array_equal(np.sort(shuffle, axis=0), np.sort(real, axis=0))  # same marginals per cell
    noise = real.mean(axis=0) + real.std(axis=0) * rng.normal(size=real.shape)
    scores = {}
    for name, ens in (("real", real), ("shuffle", shuffle), ("noise", noise)):
        vs = S.VariogramScore(list(ens.transpose(1, 0, 2)), grid, ds.static.std)
        for state in test:
            vs.add_state(list(state[:, ocean]))
        scores[name] = vs
    n, t = len(real), len(test)
    for broken in ("shuffle", "noise"):
        diff = bootstrap_joint([scores[broken].stat_fn(), scores["real"].stat_fn()], [n, n], t, sub, n_boot=300)
        assert diff.low > 0, (broken, diff)
    assert scores["shuffle"].score() > 1.2 * scores["real"].score()
