"""From noise to physical sea-ice fields: the sampler plus the way back to data space.

A diffusion run generates in its own space: normalised fields (data-space diffusion) or
standardised latents (latent diffusion). A :class:`FieldDecoder` turns those into physical
fields clipped to the variables' bounds with land set to 0, and also returns the values before
clipping, so evaluation can count bound violations. Used by ``hpc-seaice sample`` and by the
trainer's validation images alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hpc_seaice.config import DiffusionConfig
from hpc_seaice.diffusion.sampler import VDenoiser, heun_sample, sampler_sigma_range


class FieldDecoder:
    """Maps generated model-space tensors [B, C, h, w] to physical fields [B, 5, H, W]."""

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _per_channel(values: Any, device: torch.device) -> torch.Tensor:
    """Per-channel values as a [1, C, 1, 1] float32 tensor that broadcasts over a batch."""
    return torch.as_tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


class DataSpaceDecoder(FieldDecoder):
    """Un-normalise (x * std + mean), clip to bounds, land to 0."""

    def __init__(self, mean: Any, std: Any, lower: Any, upper: Any, mask: Any, device: torch.device) -> None:
        self.mean, self.std = _per_channel(mean, device), _per_channel(std, device)
        self.lower, self.upper = _per_channel(lower, device), _per_channel(upper, device)
        self.mask = torch.as_tensor(mask, dtype=torch.float32, device=device)

    def __call__(self, x):
        raw = (x.float() * self.std + self.mean) * self.mask
        clipped = torch.maximum(torch.minimum(raw, self.upper), self.lower) * self.mask
        return clipped, raw


class LatentDecoder(FieldDecoder):
    """Un-standardise the latent, decode with the VAE (deterministic: clamp(mu, l, u)).

    ``mean``/``std`` are the latent data set's own statistics (its ``static.h5``): the ones the
    latent diffusion run was trained with, whatever else was encoded with the same VAE since.
    """

    def __init__(self, vae: nn.Module, mean: Any, std: Any, mask: Any, device: torch.device) -> None:
        self.vae = vae
        self.mean, self.std = _per_channel(mean, device), _per_channel(std, device)
        self.mask = torch.as_tensor(mask, dtype=torch.float32, device=device)

    def __call__(self, x):
        z = x.float() * self.std + self.mean
        mu_norm, _ = self.vae.decode_params(z)  # one decoder pass serves both outputs
        raw = self.vae.denormalize(mu_norm.float()) * self.mask
        lower, upper = (bound.view(1, -1, 1, 1) for bound in (self.vae.lower, self.vae.upper))
        return torch.clamp(raw, min=lower, max=upper) * self.mask, raw


@torch.no_grad()
def generate(
    net: nn.Module, noise: torch.Tensor, mask: torch.Tensor | None, diffusion: DiffusionConfig, steps: int
) -> torch.Tensor:
    """Heun sampling (EDM discretisation) of the v-prediction network from standard-normal noise."""
    sigma_min, sigma_max = sampler_sigma_range(diffusion)
    denoiser = VDenoiser(net, mask=mask)
    return heun_sample(
        denoiser, noise, num_steps=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=diffusion.sampler_rho
    )


def decoder_for(
    manifest: Any, static: Any, vae: nn.Module | None, field_mask: Any, device: torch.device
) -> FieldDecoder:
    """The decoder for a diffusion run's data set: data space from its statistics, latent via the VAE."""
    if manifest.kind == "latent":
        if vae is None:
            raise ValueError("a latent-space run needs its VAE to decode")
        return LatentDecoder(vae, static.mean, static.std, field_mask, device)
    return DataSpaceDecoder(static.mean, static.std, manifest.lower, manifest.upper, static.mask, device)
