"""Training noise schedules: normalised densities, exact inverse CDFs, order-free updates, state."""

import math

import pytest
import torch

from hpc_seaice.config import DiffusionConfig
from hpc_seaice.diffusion.schedule import AdaptiveSchedule, CosineSchedule, build_schedule, stratified_uniform


def integrate(schedule, lo: float, hi: float, n: int = 200_001) -> float:
    g = torch.linspace(lo, hi, n, dtype=torch.float64)
    return float(torch.trapezoid(schedule.density(g), g))


def trained_adaptive(seed: int = 0) -> AdaptiveSchedule:
    """An adaptive schedule whose bins hold a non-uniform loss profile."""
    sched = AdaptiveSchedule(-20.0, 20.0, num_bins=100, decay=0.5)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(20):
        gamma = torch.rand(512, generator=gen, dtype=torch.float64) * 40 - 20
        sched.update(gamma, torch.exp(-0.1 * (gamma - 2.0) ** 2) + 1e-3)
    return sched


@pytest.mark.parametrize("make", [lambda: CosineSchedule(-20.0, 20.0), trained_adaptive])
def test_density_integrates_to_one_and_vanishes_outside(make):
    sched = make()
    assert integrate(sched, -20.0, 20.0) == pytest.approx(1.0, abs=1e-4)
    assert (sched.density(torch.tensor([-20.5, 20.5], dtype=torch.float64)) == 0).all()
    assert (sched.density(torch.linspace(-20, 20, 1001, dtype=torch.float64)) > 0).all()


@pytest.mark.parametrize("make", [lambda: CosineSchedule(-20.0, 20.0), trained_adaptive])
def test_inverse_cdf_is_exact(make):
    """F(gamma(u)) = u with F the integral of the density, monotone, with the right end points."""
    sched = make()
    u = torch.tensor([0.0, 1e-4, 0.05, 0.3, 0.5, 0.77, 0.999, 1.0 - 1e-12], dtype=torch.float64)
    gamma = sched.gamma(u)
    assert gamma.dtype == torch.float64
    assert float(gamma[0]) == pytest.approx(-20.0)
    assert (gamma[1:] > gamma[:-1]).all()
    for ui, gi in zip(u.tolist(), gamma.tolist()):
        assert integrate(sched, -20.0, gi, 100_001) == pytest.approx(ui, abs=2e-4)


def test_adaptive_samples_follow_the_bin_probabilities():
    sched = trained_adaptive()
    u = stratified_uniform(7, range(100_000), 100_000)
    counts = torch.bincount(sched.bin_index(sched.gamma(u)), minlength=100).double() / 100_000
    torch.testing.assert_close(counts, sched.probabilities(), rtol=0, atol=2e-5)


def test_adaptive_update_is_the_ema_of_per_bin_batch_means():
    sched = AdaptiveSchedule(-20.0, 20.0, num_bins=4, decay=0.9)  # bins of width 10
    gamma = torch.tensor([-15.0, -12.0, 5.0, 19.0, 11.0])
    loss = torch.tensor([1.0, 3.0, 10.0, 4.0, 2.0])
    sched.update(gamma, loss)
    # bin 0: mean 2; bin 1: untouched; bin 2: 10; bin 3: mean 3
    expected = torch.tensor([0.9 + 0.1 * 2, 1.0, 0.9 + 0.1 * 10, 0.9 + 0.1 * 3], dtype=torch.float64)
    torch.testing.assert_close(sched.weights, expected)
    probs = sched.probabilities()
    mixed = 0.99 * expected / expected.sum() + 0.01 / 4
    torch.testing.assert_close(probs, mixed)
    torch.testing.assert_close(sched.density(torch.tensor([0.0]).double()), mixed[2:3] / 10.0)


def test_adaptive_update_does_not_depend_on_sample_order_or_batch_split():
    gen = torch.Generator().manual_seed(3)
    gamma = torch.rand(256, generator=gen, dtype=torch.float64) * 40 - 20
    loss = torch.rand(256, generator=gen, dtype=torch.float64)
    a, b = AdaptiveSchedule(-20.0, 20.0), AdaptiveSchedule(-20.0, 20.0)
    a.update(gamma, loss)
    perm = torch.randperm(256, generator=gen)
    b.update(gamma[perm], loss[perm])
    torch.testing.assert_close(a.weights, b.weights, rtol=1e-14, atol=0)


def test_adaptive_density_stays_positive_and_ignores_non_finite_losses():
    sched = AdaptiveSchedule(-20.0, 20.0, num_bins=10, decay=0.0)  # decay 0: weights = batch means
    gamma = torch.linspace(-19.0, 19.0, 10, dtype=torch.float64)
    loss = torch.zeros(10, dtype=torch.float64)
    loss[3] = 5.0
    sched.update(gamma, loss)
    assert (sched.probabilities() > 0).all()
    assert float(sched.probabilities()[3]) == pytest.approx(0.99 + 0.001)
    before = sched.weights.clone()
    sched.update(torch.tensor([0.5, 1.0]), torch.tensor([math.nan, math.inf]))
    torch.testing.assert_close(sched.weights, before)


def test_adaptive_state_round_trip_reproduces_the_draws():
    sched = trained_adaptive()
    fresh = AdaptiveSchedule(-20.0, 20.0)
    state = sched.state_dict()
    fresh.load_state_dict(state)
    u = torch.rand(64, dtype=torch.float64)
    torch.testing.assert_close(fresh.gamma(u), sched.gamma(u), rtol=0, atol=0)
    torch.testing.assert_close(fresh.density(fresh.gamma(u)), sched.density(sched.gamma(u)), rtol=0, atol=0)
    state["weights"][0] = 123.0  # the state is a copy, not a view of the live weights
    assert float(sched.weights[0]) != 123.0
    with pytest.raises(ValueError, match="bins"):
        AdaptiveSchedule(-20.0, 20.0, num_bins=50).load_state_dict(sched.state_dict())
    with pytest.raises(ValueError, match="range"):
        AdaptiveSchedule(-10.0, 20.0).load_state_dict(sched.state_dict())
    with pytest.raises(ValueError, match="kind"):
        CosineSchedule(-20.0, 20.0).load_state_dict(sched.state_dict())


def test_schedules_keep_device_and_dtype_of_their_input():
    for sched in (CosineSchedule(-20.0, 20.0), trained_adaptive()):
        u = torch.rand(8)
        assert sched.gamma(u).dtype == torch.float32
        assert sched.density(sched.gamma(u)).dtype == torch.float32


def test_stratified_uniform_is_the_same_whatever_the_number_of_ranks():
    batch = 12
    full = stratified_uniform(42, range(36, 48), batch)  # step 3 of a stream, one rank
    halves = torch.cat([stratified_uniform(42, range(36, 42), batch), stratified_uniform(42, range(42, 48), batch)])
    torch.testing.assert_close(full, halves, rtol=0, atol=0)
    assert ((full >= 0) & (full < 1)).all()
    spacing = torch.sort(full).values.diff()
    torch.testing.assert_close(spacing, torch.full_like(spacing, 1 / batch))
    assert not torch.equal(full, stratified_uniform(43, range(36, 48), batch))
    torch.testing.assert_close(full, stratified_uniform(42, list(range(36, 48)), batch))


def test_build_schedule_follows_the_config():
    adaptive = build_schedule(DiffusionConfig(schedule="adaptive", adaptive_bins=20, gamma_min=-5.0))
    assert isinstance(adaptive, AdaptiveSchedule) and adaptive.num_bins == 20 and adaptive.gamma_min == -5.0
    assert isinstance(build_schedule(DiffusionConfig(schedule="cosine")), CosineSchedule)
