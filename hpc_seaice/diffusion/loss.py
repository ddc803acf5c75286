"""The diffusion training loss (docs/science.md §4, the authors' convention).

    loss = 0.5 * mean_b [ w(gamma_b) * E_b / p(gamma_b) ],   w(gamma) = exp(-gamma / 2)
    E_b  = masked mean over ocean cells and channels of |eps - eps_hat|^2
         = masked mean of (v - v_hat)^2 * sigmoid(gamma)

p is the density the training gammas were drawn from (importance weighting), so the same
objective results whatever the schedule. The per-sample w * E is what the adaptive schedule
learns its density from.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hpc_seaice.diffusion.schedule import Schedule
from hpc_seaice.diffusion.vparam import diffuse, v_target


def loss_weight(gamma: Tensor) -> Tensor:
    """The ``exp(-gamma / 2)`` weighting of the epsilon-error (a sigmoid-like ELBO weighting)."""
    return torch.exp(-0.5 * gamma)


def masked_mean_per_sample(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over all but the batch dimension, over cells where ``mask`` > 0 ([H, W] or [B, 1, H, W])."""
    if mask is None:
        return values.flatten(1).mean(1)
    m = mask.to(device=values.device, dtype=values.dtype)
    if m.dim() == 2:
        m = m[None, None]
    m = m.expand_as(values)
    total = torch.where(m > 0, values * m, torch.zeros_like(values)).flatten(1).sum(1)
    return total / m.flatten(1).sum(1).clamp_min(1e-9)


def diffusion_loss(
    model: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    mask: Tensor | None,
    gamma: Tensor,
    eps: Tensor,
    schedule: Schedule,
) -> tuple[Tensor, Tensor]:
    """(scalar loss, per-sample weighted error w(gamma) * E, detached) for clean data ``x``.

    ``model(z, gamma)`` predicts v; ``gamma`` [B] and ``eps`` (like ``x``) are supplied by the
    caller so the trainer controls all randomness. The network may run under autocast; the
    error is computed in float32.
    """
    z = diffuse(x, eps, gamma)
    target = v_target(x, eps, gamma).float()
    v_hat = model(z, gamma).float()
    g = gamma.float()
    eps_error = (v_hat - target).square() * torch.sigmoid(g).reshape(-1, *([1] * (x.dim() - 1)))
    per_sample = loss_weight(g) * masked_mean_per_sample(eps_error, mask)
    importance = 1.0 / schedule.density(g).clamp_min(1e-30)
    loss = 0.5 * (per_sample * importance).mean()
    return loss, per_sample.detach()
