"""The residual refiner: a data-space denoiser of what a VAE's decoder loses (docs/refiner.md).

A latent diffusion model's samples are only as sharp as its decoder: the decoded location of the
censored Gaussian is a conditional mean, so the fine scales of thickness, concentration and damage
(the leads, the ice edge) come out smoothed. The refiner is a small conditional diffusion model in
data space that generates the residual ``r = x - decode(z)`` given the decoded field (as CorrDiff
does for downscaling): trained after the VAE on (state, reconstruction) pairs, sampled in a few
steps after the latent model. Its network is the project's one U-Net with the decoded field as
``cond_channels``; the residual is scaled by its measured standard deviation per channel so the
diffusion sees unit-variance data, and that scale is a buffer, saved with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hpc_seaice.models.unet import UNet


class ResidualRefiner(nn.Module):
    """``forward(r_scaled, gamma, cond) -> v_hat``: the U-Net conditioned on the decoded field.

    ``residual_scale`` [C] is the std per channel of ``x - decode(z)`` over ocean cells of the
    training states (normalised units), measured when the run starts and saved with the weights.
    """

    def __init__(self, net: UNet, channels: int) -> None:
        super().__init__()
        if net.cfg.cond_channels != channels or net.cfg.in_channels != channels:
            raise ValueError(
                f"a refiner's U-Net needs in_channels = cond_channels = {channels} (the fields' variables), "
                f"got in_channels={net.cfg.in_channels}, cond_channels={net.cfg.cond_channels}"
            )
        self.net = net
        self.register_buffer("residual_scale", torch.ones(channels))

    def set_residual_scale(self, scale: Sequence[float] | Tensor) -> None:
        scale = torch.as_tensor(scale, dtype=torch.float32)
        if scale.shape != self.residual_scale.shape or not bool((scale > 0).all()) or not bool(scale.isfinite().all()):
            raise ValueError(f"residual scale must be {tuple(self.residual_scale.shape)} positive values, got {scale}")
        self.residual_scale.copy_(scale.to(self.residual_scale.device))

    def set_ocean_fraction(self, fraction: Tensor | None) -> None:
        self.net.set_ocean_fraction(fraction)

    def check_input(self, x: Tensor) -> None:
        self.net.check_input(x)

    def scale(self) -> Tensor:
        """``residual_scale`` as [1, C, 1, 1]."""
        return self.residual_scale.view(1, -1, 1, 1)

    def forward(self, x: Tensor, gamma: Tensor, cond: Tensor) -> Tensor:
        return self.net(x, gamma, cond=cond)
