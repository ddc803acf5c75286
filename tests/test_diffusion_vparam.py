"""v-parametrisation of the variance-preserving process in log-SNR."""

import torch

from hpc_seaice.diffusion.vparam import alpha_sigma, denoise_from_v, diffuse, v_target


def test_alpha_sigma_is_variance_preserving_and_matches_the_log_snr():
    gamma = torch.linspace(-20, 20, 81, dtype=torch.float64)
    alpha, sigma = alpha_sigma(gamma)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(gamma), rtol=0, atol=1e-15)
    torch.testing.assert_close(torch.log(alpha**2 / sigma**2), gamma, rtol=0, atol=1e-9)


def test_round_trip_is_exact_in_float64():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 8, 8, generator=gen, dtype=torch.float64)
    eps = torch.randn(6, 5, 8, 8, generator=gen, dtype=torch.float64)
    gamma = torch.tensor([-20.0, -7.5, 0.0, 3.3, 12.0, 20.0], dtype=torch.float64)
    z = diffuse(x, eps, gamma)
    v = v_target(x, eps, gamma)
    x_hat, eps_hat = denoise_from_v(z, v, gamma)
    torch.testing.assert_close(x_hat, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(eps_hat, eps, rtol=0, atol=1e-12)


def test_v_error_is_the_epsilon_error_times_sigmoid_gamma():
    """(v - v_hat)^2 sigmoid(gamma) = (eps - eps_hat)^2, the identity the loss relies on."""
    gen = torch.Generator().manual_seed(1)
    x, eps, v_hat = (torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64) for _ in range(3))
    gamma = torch.tensor([-5.0, 0.0, 2.0, 9.0], dtype=torch.float64)
    z = diffuse(x, eps, gamma)
    _, eps_hat = denoise_from_v(z, v_hat, gamma)
    lhs = (v_target(x, eps, gamma) - v_hat) ** 2 * torch.sigmoid(gamma)[:, None, None, None]
    torch.testing.assert_close(lhs, (eps - eps_hat) ** 2)


def test_scalar_gamma_broadcasts():
    x, eps = torch.ones(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    z = diffuse(x, eps, torch.tensor(0.0))
    torch.testing.assert_close(z, torch.full_like(x, 0.5**0.5))
