"""The censored-Gaussian NLL against an independent reference (scipy.stats.norm), and its gradients."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from hpc_seaice.models.censored import censored_gaussian_nll, gaussian_nll, log_ndtr


def reference_nll(x, mu, sigma, lower, upper):
    """Censored NLL from scipy, element by element (float64)."""
    out = np.empty(len(x))
    for i, (xi, mi, si) in enumerate(zip(x, mu, sigma)):
        if xi <= lower:
            out[i] = -norm.logcdf((lower - mi) / si)
        elif xi >= upper:
            out[i] = -norm.logsf((upper - mi) / si)  # = -log Phi((mu - u) / sigma)
        else:
            out[i] = -norm.logpdf(xi, loc=mi, scale=si)
    return out


def reference_grad_mu(x, mu, sigma, lower, upper):
    """d NLL / d mu from scipy: the inverse Mills ratio at the bounds, (mu - x) / sigma^2 inside."""
    out = np.empty(len(x))
    for i, (xi, mi, si) in enumerate(zip(x, mu, sigma)):
        if xi <= lower:
            t = (lower - mi) / si
            out[i] = np.exp(norm.logpdf(t) - norm.logcdf(t)) / si
        elif xi >= upper:
            t = (mi - upper) / si
            out[i] = -np.exp(norm.logpdf(t) - norm.logcdf(t)) / si
        else:
            out[i] = (mi - xi) / si**2
    return out


CASES = [
    # x at/below lower, inside, at/above upper; mu inside, at and far beyond both bounds
    (0.0, 0.5, 0.1),
    (0.0, -0.3, 0.2),
    (-0.1, 2.0, 0.05),  # below the lower bound counts as censored
    (0.3, 0.3, 0.1),
    (0.7, 0.2, 0.3),
    (1.0, 0.5, 0.1),
    (1.0, 1.7, 0.2),
    (1.2, -3.0, 0.1),
    (0.0, 4.0, 0.1),  # z = 40 beyond the lower bound
    (1.0, -3.0, 0.1),  # z = 40 beyond the upper bound
    (0.0, 30.0, 0.1),  # z = 300
    (1.0, -1e3, 1.0),  # z ~ 1000
    (0.5, 4.5, 0.1),  # inside, z = 40
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_scipy_at_inside_and_beyond_bounds(dtype):
    x, mu, sigma = (np.array(c, dtype=np.float64) for c in zip(*CASES))
    ref = reference_nll(x, mu, sigma, 0.0, 1.0)
    ref_grad = reference_grad_mu(x, mu, sigma, 0.0, 1.0)
    mu_t = torch.tensor(mu, dtype=dtype, requires_grad=True)
    got = censored_gaussian_nll(torch.tensor(x, dtype=dtype), mu_t, torch.tensor(sigma, dtype=dtype), 0.0, 1.0)
    got.sum().backward()
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(got.detach().double().numpy(), ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(mu_t.grad.double().numpy(), ref_grad, rtol=max(rtol, 1e-9) * 10, atol=1e-6)


def test_infinite_bounds_give_the_gaussian_nll():
    x = torch.tensor([-5.0, 0.0, 0.3, 7.0], dtype=torch.float64)
    mu = torch.tensor([0.0, 1.0, -2.0, 3.0], dtype=torch.float64)
    sigma = torch.tensor([1.0, 0.5, 2.0, 0.1], dtype=torch.float64)
    ref = -norm.logpdf(x.numpy(), loc=mu.numpy(), scale=sigma.numpy())
    got = censored_gaussian_nll(x, mu, sigma, -math.inf, math.inf)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(gaussian_nll(x, mu, sigma).numpy(), ref, rtol=1e-12)
    # one-sided: sit >= 0 has no upper bound
    got = censored_gaussian_nll(
        torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), 0.5, 0.0, math.inf
    )
    np.testing.assert_allclose(got.numpy(), [-norm.logcdf(-2.0)], rtol=1e-12)


def test_per_channel_tensor_bounds_broadcast():
    # channels: [0, 1], [0, inf), (-inf, inf)
    lower = torch.tensor([0.0, 0.0, -math.inf]).reshape(1, 3, 1, 1)
    upper = torch.tensor([1.0, math.inf, math.inf]).reshape(1, 3, 1, 1)
    x = torch.tensor([1.0, 0.0, -4.0]).reshape(1, 3, 1, 1)
    mu = torch.tensor([0.5, 0.5, 0.0]).reshape(1, 3, 1, 1)
    got = censored_gaussian_nll(x, mu, 0.25, lower, upper).flatten()
    ref = [-norm.logsf(2.0), -norm.logcdf(-2.0), -norm.logpdf(-4.0, 0.0, 0.25)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5)


def test_gradients_finite_far_beyond_the_bounds_for_all_inputs():
    z = torch.tensor([0.0, 5.0, 40.0, 100.0, 1e3, 1e4])
    for x_val, sign in [(0.0, 1.0), (1.0, -1.0)]:  # at the lower bound mu far above, and vice versa
        mu = (x_val + sign * z * 0.1).requires_grad_()
        sigma = torch.full_like(z, 0.1, requires_grad=True)
        x = torch.full_like(z, x_val)
        nll = censored_gaussian_nll(x, mu, sigma, 0.0, 1.0)
        nll.sum().backward()
        assert torch.isfinite(nll).all()
        assert torch.isfinite(mu.grad).all() and torch.isfinite(sigma.grad).all()
        # the gradient pushes mu back towards the bound and grows like z / sigma
        assert (sign * mu.grad[1:] > 0).all()
        np.testing.assert_allclose(sign * mu.grad[-3:].numpy(), z[-3:].numpy() / 0.1, rtol=1e-3)


def test_no_nan_gradient_from_unused_infinite_bound_branch():
    mu = torch.tensor([0.0, 3.0], requires_grad=True)
    sigma = torch.tensor([1.0, 1.0], requires_grad=True)
    nll = censored_gaussian_nll(torch.tensor([0.5, -2.0]), mu, sigma, -math.inf, math.inf)
    nll.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(sigma.grad).all()


def test_tolerance_catches_values_just_off_the_bound():
    x = torch.tensor([3e-6, 1.0 - 3e-6])
    mu = torch.tensor([0.5, 0.5])
    strict = censored_gaussian_nll(x, mu, 0.1, 0.0, 1.0)
    tolerant = censored_gaussian_nll(x, mu, 0.1, 0.0, 1.0, atol=1e-5)
    expected = torch.tensor([-norm.logcdf(-5.0)] * 2, dtype=torch.float32)
    torch.testing.assert_close(tolerant, expected)
    # without the tolerance they are interior values with a Gaussian density
    torch.testing.assert_close(strict, gaussian_nll(x, mu, torch.tensor(0.1)))


def test_log_ndtr_backward_is_the_inverse_mills_ratio():
    t = torch.tensor([-1e4, -40.0, -5.0, 0.0, 5.0, 40.0], dtype=torch.float64, requires_grad=True)
    log_ndtr(t).sum().backward()
    ref = np.exp(norm.logpdf(t.detach().numpy()) - norm.logcdf(t.detach().numpy()))
    np.testing.assert_allclose(t.grad.numpy(), ref, rtol=1e-8, atol=1e-300)
