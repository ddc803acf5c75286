"""Variance-preserving diffusion in log-SNR gamma with v-prediction (docs/science.md §4).

    alpha^2 = sigmoid(gamma),  sigma^2 = sigmoid(-gamma),  z = alpha x + sigma eps
    v = alpha eps - sigma x,   x_hat = alpha z - sigma v_hat,  eps_hat = sigma z + alpha v_hat

``gamma`` is [B] (one noise level per sample) or a scalar; it is broadcast over the remaining
dimensions of the data. All functions are pure and differentiable.
"""

from __future__ import annotations

from torch import Tensor


def alpha_sigma(gamma: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha, sigma) with alpha^2 + sigma^2 = 1, same shape as ``gamma``."""
    return gamma.sigmoid().sqrt(), (-gamma).sigmoid().sqrt()


def _like(gamma: Tensor, x: Tensor) -> Tensor:
    """[B] -> [B, 1, ..., 1] so that it broadcasts against x [B, ...]."""
    if gamma.dim() == 0:
        return gamma
    return gamma.reshape(gamma.shape[0], *([1] * (x.dim() - 1)))


def diffuse(x: Tensor, eps: Tensor, gamma: Tensor) -> Tensor:
    """Noisy sample z_gamma = alpha x + sigma eps."""
    alpha, sigma = alpha_sigma(_like(gamma, x))
    return alpha * x + sigma * eps


def v_target(x: Tensor, eps: Tensor, gamma: Tensor) -> Tensor:
    """Regression target of the network: v = alpha eps - sigma x."""
    alpha, sigma = alpha_sigma(_like(gamma, x))
    return alpha * eps - sigma * x


def denoise_from_v(z: Tensor, v: Tensor, gamma: Tensor) -> tuple[Tensor, Tensor]:
    """(x_hat, eps_hat) from the noisy sample and a v prediction."""
    alpha, sigma = alpha_sigma(_like(gamma, z))
    return alpha * z - sigma * v, sigma * z + alpha * v
