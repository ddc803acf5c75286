"""Gaussian and censored-Gaussian negative log-likelihoods (docs/science.md §3).

A censored Gaussian puts the probability mass that a Gaussian N(mu, sigma^2) has beyond a
physical bound onto the bound itself. neXtSIM fields sit exactly at their bounds in many cells
(open water sic = 0, pack ice sic = 1), so the decoder may push mu past the bound and clipping
then produces the exact plateaus:

    NLL = -log Phi((l - mu) / sigma)                               if x <= l
        = -log Phi((mu - u) / sigma)                               if x >= u
        = 0.5 ((x - mu) / sigma)^2 + log sigma + 0.5 log(2 pi)     otherwise

Both functions return the per-element NLL; the caller does the masked reduction.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)


class _LogNdtr(torch.autograd.Function):
    """log Phi(t) with a backward that stays accurate far in the lower tail.

    torch's own backward of ``log_ndtr`` evaluates exp(-t^2/2 - log Phi(t)), a difference of two
    huge numbers: at t = -1e4 in float32 it is off by a factor 6. The derivative is the inverse
    Mills ratio phi(t)/Phi(t) = 1 / (sqrt(pi/2) erfcx(-t/sqrt(2))), and erfcx is evaluated without
    cancellation for any t (it tends to -t for t -> -inf and to 0 for t -> +inf).
    """

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(t)
        return torch.special.log_ndtr(t)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (t,) = ctx.saved_tensors
        return grad / (_SQRT_HALF_PI * torch.special.erfcx(-t * math.sqrt(0.5)))


def log_ndtr(t: Tensor) -> Tensor:
    """log of the standard normal CDF with finite, accurate gradients for any finite t."""
    return _LogNdtr.apply(t)


def _as_bound(value: float | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def gaussian_nll(x: Tensor, mu: Tensor, sigma: Tensor | float) -> Tensor:
    """Per-element Gaussian NLL of ``x`` under N(mu, sigma^2) (sigma broadcastable, > 0)."""
    sigma = _as_bound(sigma, mu)
    z = (x - mu) / sigma
    return 0.5 * z.square() + torch.log(sigma) + _HALF_LOG_2PI


def censored_gaussian_nll(
    x: Tensor,
    mu: Tensor,
    sigma: Tensor | float,
    lower: Tensor | float,
    upper: Tensor | float,
    *,
    atol: float = 0.0,
) -> Tensor:
    """Per-element NLL of ``x`` under N(mu, sigma^2) censored to [lower, upper].

    ``lower``/``upper`` are floats or tensors broadcastable to ``x``; +-inf disables that side
    (both infinite: the Gaussian NLL). A value counts as "at the bound" when x <= lower + atol
    (x >= upper - atol); a small ``atol`` catches exact 0/1 values that went through a float32
    normalisation. Values and gradients are finite for standardised errors of any finite size:
    the branch that ``torch.where`` discards is fed a finite dummy argument, so it can never
    leak inf/NaN into the gradient (0 * inf = NaN in backward).
    """
    sigma = _as_bound(sigma, mu)
    lower = _as_bound(lower, x)
    upper = _as_bound(upper, x)
    at_lower = x <= lower + atol
    at_upper = (x >= upper - atol) & ~at_lower
    inside = ~(at_lower | at_upper)

    zero = torch.zeros((), dtype=mu.dtype, device=mu.device)
    # Infinite bounds never select their branch; replace them so (l - mu)/sigma stays finite.
    lower_f = torch.where(torch.isfinite(lower), lower, zero)
    upper_f = torch.where(torch.isfinite(upper), upper, zero)
    t_lower = torch.where(at_lower, (lower_f - mu) / sigma, zero)
    t_upper = torch.where(at_upper, (mu - upper_f) / sigma, zero)
    x_inside = torch.where(inside, x, mu.detach())

    nll_inside = gaussian_nll(x_inside, mu, sigma)
    nll = torch.where(at_lower, -log_ndtr(t_lower), nll_inside)
    return torch.where(at_upper, -log_ndtr(t_upper), nll)
