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


def test_sea_ice_cover_probability_and_calibration():
    sic = np.zeros((4, 1, 3))
    sic[:, 0, 0] = [0.2, 0.1, 0.9, 0.15]  # 3 of 4 ice-covered (0.15 counts)
    sic[:2, 0, 1] = 0.5  # 2 of 4
    np.testing.assert_allclose(M.sea_ice_cover_probability(sic), [[0.75, 0.5, 0.0]])

    p_test = np.array([[0.0, 0.02, 0.51, 0.99, 1.0, 0.5]])
    p_gen = np.array([[0.1, 0.2, 0.4, 0.8, 0.9, 0.3]])
    mask = np.array([[1, 1, 1, 1, 1, 0]])
    cal = M.cover_calibration(p_test, p_gen, mask, bin_width=0.05)
    assert cal.counts.sum() == 5 and cal.counts.size == 20
    assert cal.counts[0] == 2 and cal.counts[10] == 1 and cal.counts[19] == 2
    assert cal.mean_generated[0] == pytest.approx(0.15)
    assert cal.mean_test[0] == pytest.approx(0.01)
    assert cal.mean_generated[10] == pytest.approx(0.4)  # the land cell (0.5 -> 0.3) is excluded
    assert cal.mean_generated[19] == pytest.approx(0.85)
    assert np.isnan(cal.mean_generated[5])
    gaps = [0.14 * 2, 0.11, (0.995 - 0.85) * 2]
    assert cal.error == pytest.approx(sum(gaps) / 5)
    assert cal.to_dict()["mean_generated"][5] is None
    np.testing.assert_allclose(cal.bin_centers[:2], [0.025, 0.075])


def test_miz_area():
    mask = np.ones((2, 3))
    mask[1, 2] = 0
    sic = np.array([[[0.15, 0.8, 0.81], [0.149, 0.5, 0.5]], [[1.0, 0.0, 0.3], [0.3, 0.3, 0.3]]])
    # state 0: 0.15, 0.8, 0.5 inside (the 0.5 on land is not); state 1: 0.3 x 3 (+ one on land)
    np.testing.assert_allclose(M.miz_area(sic, mask, 144.0), [3 * 144.0, 3 * 144.0])
    area = np.arange(6, dtype=float).reshape(2, 3)
    np.testing.assert_allclose(M.miz_area(sic[0], mask, area), 0 + 1 + 4)


def _grid(h: int, w: int, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.meshgrid(np.arange(h) * dy, np.arange(w) * dx, indexing="ij")
    return x, y


def test_deformation_of_linear_velocity_fields():
    dx, dy = 12e3, 10e3
    x, y = _grid(9, 11, dx, dy)
    a = 2e-6
    # Pure stretching u = a x, v = -a y: du/dx - dv/dy = 2a, no shear, no divergence.
    np.testing.assert_allclose(M.total_deformation(a * x, -a * y, dx, dy), 2 * a, rtol=1e-10)
    np.testing.assert_allclose(M.divergence(a * x, -a * y, dx, dy), 0.0, atol=1e-18)
    # Pure shear u = b y, v = b x: du/dy + dv/dx = 2b.
    b = 3e-6
    np.testing.assert_allclose(M.total_deformation(b * y, b * x, dx, dy), 2 * b, rtol=1e-10)
    # Rigid rotation u = -w y, v = w x deforms nothing.
    np.testing.assert_allclose(M.total_deformation(-b * y, b * x, dx, dy), 0.0, atol=1e-18)
    # General linear field, batched.
    c = np.array([1e-6, -4e-6, 2.5e-6, 0.5e-6])  # du/dx, du/dy, dv/dx, dv/dy
    u = np.stack([c[0] * x + c[1] * y, 2 * (c[0] * x + c[1] * y)])
    v = np.stack([c[2] * x + c[3] * y, 2 * (c[2] * x + c[3] * y)])
    expect = np.hypot(c[0] - c[3], c[1] + c[2])
    out = M.total_deformation(u, v, dx, dy)
    assert out.shape == (2, 9, 11)
    np.testing.assert_allclose(out[0], expect, rtol=1e-9)
    np.testing.assert_allclose(out[1], 2 * expect, rtol=1e-9)
    np.testing.assert_allclose(M.divergence(u, v, dx, dy)[0], c[0] + c[3], rtol=1e-9)


def test_deformation_of_sinusoidal_shear_and_mask():
    dx = dy = 1e3
    n = 200
    x, y = _grid(n, n, dx, dy)
    length, amp = 50e3, 0.1
    u = amp * np.cos(2 * np.pi * y / length)
    exact = np.abs(amp * 2 * np.pi / length * np.sin(2 * np.pi * y / length))
    got = M.total_deformation(u, np.zeros_like(u), dx, dy)
    # centred differences: relative error ~ (k dy)^2 / 6 ~ 0.3 %
    np.testing.assert_allclose(got[1:-1], exact[1:-1], atol=5e-3 * exact.max())
    np.testing.assert_allclose(M.speed(u, u), np.sqrt(2) * np.abs(u))

    mask = np.ones((5, 5))
    mask[2, 2] = 0
    stencil = M.stencil_mask(mask)
    assert not stencil[2, 2] and not stencil[1, 2] and not stencil[3, 2] and not stencil[2, 1]
    assert stencil[1, 1] and stencil[0, 0]
    deform = M.total_deformation(np.ones((5, 5)), np.zeros((5, 5)), dx, dy, mask=mask)
    assert np.isnan(deform[2, 3]) and deform[0, 0] == 0.0
