"""Metrics against independent computations on small arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate

from hpc_seaice.evaluation import metrics as M


def crps_by_integration(members: np.ndarray, y: float) -> float:
    """CRPS as the integral of (F_ens(x) - 1{x >= y})^2 over x (its definition)."""
    members = np.sort(members)

    def integrand(x: float) -> float:
        cdf = np.searchsorted(members, x, side="right") / members.size
        return (cdf - float(x >= y)) ** 2

    points = np.concatenate([members, [y]])
    lo, hi = points.min() - 1.0, points.max() + 1.0
    value, _ = integrate.quad(integrand, lo, hi, points=np.unique(points), limit=200, epsabs=1e-12)
    return value


def crps_fair_brute_force(members: np.ndarray, y: float) -> float:
    m = members.size
    pairs = np.abs(members[:, None] - members[None, :]).sum() / (m * (m - 1))
    return np.abs(members - y).mean() - 0.5 * pairs


def test_crps_hand_example():
    ens = np.array([0.0, 1.0])
    # F = 0.5 on [0, 1) against a step at 0: integral of 0.25 over a unit interval.
    assert M.crps_ensemble(ens, 0.0) == pytest.approx(0.25)
    # Fair: E|X - y| = 0.5, E|X - X'| over distinct pairs = 1.
    assert M.crps_ensemble(ens, 0.0, fair=True) == pytest.approx(0.0)
    # One member: the absolute error.
    assert M.crps_ensemble(np.array([2.5]), 1.0) == pytest.approx(1.5)


def test_crps_matches_integral_and_brute_force():
    rng = np.random.default_rng(0)
    ens = rng.normal(size=(7, 3, 4))
    obs = rng.normal(size=(3, 4))
    got = M.crps_ensemble(ens, obs)
    got_fair = M.crps_ensemble(ens, obs, fair=True)
    assert got.shape == (3, 4)
    for idx in np.ndindex(3, 4):
        members = ens[(slice(None), *idx)]
        assert got[idx] == pytest.approx(crps_by_integration(members, obs[idx]), abs=1e-8)
        assert got_fair[idx] == pytest.approx(crps_fair_brute_force(members, obs[idx]), abs=1e-12)
    # Ties and an observation outside the ensemble.
    ens_ties = np.array([1.0, 1.0, 2.0, 2.0, 2.0])
    assert M.crps_ensemble(ens_ties, 5.0) == pytest.approx(crps_by_integration(ens_ties, 5.0), abs=1e-10)


def test_crps_axis_broadcast_and_torch():
    rng = np.random.default_rng(1)
    ens = rng.normal(size=(3, 6, 5)).astype(np.float32)
    obs = rng.normal(size=(3, 5)).astype(np.float32)
    along0 = M.crps_ensemble(np.moveaxis(ens, 1, 0), obs)
    along1 = M.crps_ensemble(ens, obs, axis=1)
    np.testing.assert_allclose(along1, along0, rtol=1e-6)
    for fair in (False, True):
        t = M.crps_ensemble(torch.from_numpy(ens), torch.from_numpy(obs), axis=1, fair=fair)
        assert isinstance(t, torch.Tensor)
        np.testing.assert_allclose(t.numpy(), M.crps_ensemble(ens, obs, axis=1, fair=fair), rtol=1e-5, atol=1e-6)
    # A scalar observation broadcasts.
    np.testing.assert_allclose(M.crps_ensemble(ens, 0.0, axis=1), M.crps_ensemble(ens, np.zeros((3, 5)), axis=1))


def test_crps_fair_needs_two_members():
    with pytest.raises(ValueError):
        M.crps_ensemble(np.ones((1, 3)), np.zeros(3), fair=True)


def test_masked_rmse_bias():
    mask = np.array([[1, 1], [0, 1]], dtype=np.float32)
    pred = np.array([[[1.0, 2.0], [100.0, 3.0]]])
    target = np.zeros((1, 2, 2))
    assert M.masked_mean(pred, mask) == pytest.approx([2.0])
    assert M.bias(pred, target, mask) == pytest.approx([2.0])
    assert M.rmse(pred, target, mask) == pytest.approx([np.sqrt((1 + 4 + 9) / 3)])


def test_fraction_out_of_bounds():
    mask = np.array([[1, 1], [1, 0]])
    fields = np.zeros((2, 3, 2, 2))
    fields[0, 0, 0, 0] = -0.1  # sit below 0
    fields[1, 1, 0, 1] = 1.2  # sic above 1
    fields[1, 1, 1, 1] = 5.0  # land: ignored
    fields[0, 2, 1, 0] = np.nan  # invalid value counts
    fields[:, 2, 0, 0] = -7.0  # unbounded channel: never out of bounds
    frac = M.fraction_out_of_bounds(fields, [0, 0, -np.inf], [np.inf, 1, np.inf], mask)
    np.testing.assert_allclose(frac, [1 / 6, 1 / 6, 1 / 6])


def test_miz_area():
    mask = np.ones((2, 3))
    mask[1, 2] = 0
    sic = np.array([[[0.15, 0.8, 0.81], [0.149, 0.5, 0.5]], [[1.0, 0.0, 0.3], [0.3, 0.3, 0.3]]])
    # state 0: 0.15, 0.8, 0.5 inside (the 0.5 on land is not); state 1: 0.3 x 3 (+ one on land)
    np.testing.assert_allclose(M.miz_area(sic, mask, 144.0), [3 * 144.0, 3 * 144.0])
    area = np.arange(6, dtype=float).reshape(2, 3)
    np.testing.assert_allclose(M.miz_area(sic[0], mask, area), 0 + 1 + 4)
    # a stored float32 value at a bound counts the same whether it is read as float32 or float64
    stored = np.array([[0.8, 0.15, 0.81]], dtype=np.float32)
    assert M.miz_area(stored.astype(np.float64), np.ones((1, 3)), 1.0) == M.miz_area(stored, np.ones((1, 3)), 1.0) == 2
