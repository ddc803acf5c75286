"""The variational autoencoder of the latent diffusion models (docs/science.md §2).

Fully convolutional: the encoder maps normalised fields [B, C, H, W] to the mean and log-variance
of q(z | x) on a grid 2^(len(channel_mult) - 1) times coarser per side (8x for the default four
entries); the decoder maps z back to a location mu per variable in normalised units. Each
variable also has one learned scale sigma (a log-scale parameter), so the decoder defines
p(x | z) = N(mu, sigma^2) per cell, optionally censored to the variable's physical bounds.

Conventions:
- The reconstruction NLL is the masked mean over ocean cells and variables of the per-element
  NLL in normalised units (the physical-unit NLL differs by the constant log std per variable).
- The KL term is the mean over latent elements of KL(q(z|x) || N(0, I)); loss = NLL + beta * KL.
  Both terms are per-element means, so beta is relative to one value of each.
- Physical statistics and bounds are buffers: the model alone can normalise, decode and clip.
  The latent standardisation statistics belong to each encoded latent data set (its static.h5),
  not to the VAE: one VAE may encode several data sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpc_seaice.config import VAEConfig
from hpc_seaice.models.censored import censored_gaussian_nll, gaussian_nll
from hpc_seaice.models.layers import BLOCKS, group_norm
from hpc_seaice.models.light_decoder import LightDecoder

# Exact 0/1 values come out of float32 normalisation a few ulps off the normalised bound.
BOUND_TOLERANCE = 1e-5
LOGVAR_RANGE = (-30.0, 20.0)

ArrayLike = Sequence[float] | Tensor


def _buffer(values: ArrayLike, channels: int, name: str) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float32, device="cpu").flatten().clone()
    if t.numel() != channels:
        raise ValueError(f"VAE {name} has {t.numel()} values, expected one per channel ({channels})")
    return t


class Encoder(nn.Module):
    """conv in -> per level: blocks, then a 2x2 stride-2 conv to the next level's width -> 2K channels.

    With ``mask_channel`` the land-sea mask is a further input channel (``forward`` gets the
    fields with it appended).
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        block = BLOCKS[cfg.block]
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.conv_in = nn.Conv2d(cfg.in_channels + int(cfg.mask_channel), widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            layers.extend(block(width, width) for _ in range(cfg.blocks_per_level))
            if i < len(widths) - 1:
                layers.append(nn.Conv2d(width, widths[i + 1], 2, stride=2))
        self.body = nn.Sequential(*layers)
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(self.conv_in(x))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """The mirror: conv in -> per level: blocks, then nearest x2 and a 3x3 conv -> C channels of mu.

    With ``mask_channel`` it sees the coast twice: the ocean fraction of each latent cell enters
    with z, and the full-resolution mask enters the output convolution, so the coastline need not
    be stored in the latent.
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        block = BLOCKS[cfg.block]
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.mask_channel = cfg.mask_channel
        self.downsampling = 2 ** (len(widths) - 1)
        extra = int(cfg.mask_channel)
        self.conv_in = nn.Conv2d(cfg.latent_channels + extra, widths[-1], 3, padding=1)
        layers: list[nn.Module] = []
        for i in reversed(range(len(widths))):
            layers.extend(block(widths[i], widths[i]) for _ in range(cfg.blocks_per_level))
            if i > 0:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                layers.append(nn.Conv2d(widths[i], widths[i - 1], 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.norm_out = group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0] + extra, cfg.in_channels, 3, padding=1)

    def forward(self, z: Tensor, ocean: Tensor | None = None) -> Tensor:
        """mu for latent ``z``; ``ocean`` [B or 1, 1, H, W] is the full-resolution mask (mask_channel)."""
        if not self.mask_channel:
            return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(z)))))
        assert ocean is not None, "a decoder with a mask channel needs the mask"
        coarse = F.avg_pool2d(ocean, self.downsampling).expand(z.shape[0], 1, *z.shape[-2:])
        h = self.body(self.conv_in(torch.cat([z, coarse.to(z.dtype)], dim=1)))
        h = F.silu(self.norm_out(h))
        return self.conv_out(torch.cat([h, ocean.to(h.dtype).expand(h.shape[0], 1, *h.shape[-2:])], dim=1))


# vae.decoder_arch -> decoder network (vae.decoder is the likelihood: censored | gaussian).
DECODERS: dict[str, type[nn.Module]] = {"conv": Decoder, "light": LightDecoder}


class VAE(nn.Module):
    """Convolutional VAE with a Gaussian or censored-Gaussian decoder (``cfg.decoder``).

    ``data_mean``/``data_std`` are the per-channel normalisation statistics and ``lower``/``upper``
    the physical bounds per channel (+-inf allowed), all in physical units.
    """

    def __init__(
        self,
        cfg: VAEConfig,
        *,
        data_mean: ArrayLike,
        data_std: ArrayLike,
        lower: ArrayLike,
        upper: ArrayLike,
    ) -> None:
        super().__init__()
        if cfg.decoder not in ("censored", "gaussian"):
            raise ValueError(f"vae.decoder {cfg.decoder!r} is not one of ('censored', 'gaussian')")
        if cfg.decoder_arch not in DECODERS:
            raise ValueError(f"vae.decoder_arch {cfg.decoder_arch!r} is not one of {tuple(DECODERS)}")
        if cfg.block not in BLOCKS:
            raise ValueError(f"vae.block {cfg.block!r} is not one of {sorted(BLOCKS)}")
        if not cfg.channel_mult:
            raise ValueError("vae.channel_mult must name at least one level")
        if not cfg.sigma_init > 0:
            raise ValueError(f"vae.sigma_init must be positive, got {cfg.sigma_init}")
        c = cfg.in_channels
        self.cfg = cfg
        self.downsampling = 2 ** (len(cfg.channel_mult) - 1)
        std = _buffer(data_std, c, "data_std")
        if not bool((std > 0).all()):
            raise ValueError(f"VAE data_std must be positive, got {std.tolist()}")
        lo, up = _buffer(lower, c, "lower"), _buffer(upper, c, "upper")
        if not bool((lo < up).all()):
            raise ValueError(f"VAE bounds need lower < upper, got {lo.tolist()} / {up.tolist()}")
        self.register_buffer("data_mean", _buffer(data_mean, c, "data_mean"))
        self.register_buffer("data_std", std)
        self.register_buffer("lower", lo)
        self.register_buffer("upper", up)
        self.encoder = Encoder(cfg)
        self.decoder = DECODERS[cfg.decoder_arch](cfg)
        self.log_sigma = nn.Parameter(torch.full((c,), math.log(cfg.sigma_init)))
        # The land-sea mask [1, 1, H, W] (1 = ocean) of the data set's grid, for mask_channel: a
        # property of the data, not a weight, so not saved; the run sets it when it builds the VAE.
        self.register_buffer("ocean_mask", None, persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # Checkpoints written before 0.1.0's latent statistics moved into the latent data set.
        for legacy in ("latent_mean", "latent_std"):
            state_dict.pop(prefix + legacy, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_ocean_mask(self, mask: Tensor | None) -> None:
        """The land-sea mask [H, W] (1 = ocean) of the grid this VAE encodes (None: all ocean)."""
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.float32)
            if mask.dim() != 2:
                raise ValueError(f"VAE ocean mask must be [H, W], got {tuple(mask.shape)}")
            self.latent_shape(*mask.shape)
            mask = mask[None, None].to(self.log_sigma.device)
        self.ocean_mask = mask

    def _ocean(self, height: int, width: int, like: Tensor) -> Tensor:
        """The stored mask for a height x width grid (all ocean if none is set), as ``like``'s dtype."""
        mask = self.ocean_mask
        if mask is None:
            return torch.ones(1, 1, height, width, dtype=like.dtype, device=like.device)
        if tuple(mask.shape[-2:]) != (height, width):
            raise ValueError(f"VAE ocean mask is {tuple(mask.shape[-2:])}, the grid is {(height, width)}")
        return mask.to(device=like.device, dtype=like.dtype)

    # --- geometry and units -------------------------------------------------------------------

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(latent channels, H / f, W / f) for an input grid, f the down-sampling factor."""
        f = self.downsampling
        if height % f or width % f:
            raise ValueError(f"VAE grid {height} x {width} is not divisible by its down-sampling {f}")
        return (self.cfg.latent_channels, height // f, width // f)

    def _channel(self, t: Tensor) -> Tensor:
        return t[None, :, None, None]

    def normalized_bounds(self) -> tuple[Tensor, Tensor]:
        """Bounds in normalised units, (l - mean) / std per channel (+-inf stay infinite)."""
        lo = (self.lower - self.data_mean) / self.data_std
        up = (self.upper - self.data_mean) / self.data_std
        return lo, up

    def normalize(self, x_phys: Tensor) -> Tensor:
        return (x_phys - self._channel(self.data_mean)) / self._channel(self.data_std)

    def denormalize(self, x_norm: Tensor) -> Tensor:
        return x_norm * self._channel(self.data_std) + self._channel(self.data_mean)

    # --- networks -------------------------------------------------------------------------------

    def encode(self, x_norm: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised fields (land = 0) -> (mean, logvar) of q(z | x), each [B, K, H/f, W/f]."""
        if x_norm.dim() != 4 or x_norm.shape[1] != self.cfg.in_channels:
            raise ValueError(f"VAE expects [B, {self.cfg.in_channels}, H, W], got {tuple(x_norm.shape)}")
        self.latent_shape(*x_norm.shape[-2:])
        if self.cfg.mask_channel:
            ocean = self._ocean(*x_norm.shape[-2:], like=x_norm).expand(x_norm.shape[0], 1, *x_norm.shape[-2:])
            x_norm = torch.cat([x_norm, ocean], dim=1)
        if self.cfg.channels_last:
            x_norm = x_norm.contiguous(memory_format=torch.channels_last)
        mean, logvar = self.encoder(x_norm).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode_params(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Latent z (not standardised) -> (mu [B, C, H, W] in normalised units, log_sigma [C])."""
        if z.dim() != 4 or z.shape[1] != self.cfg.latent_channels:
            raise ValueError(f"VAE decoder expects [B, {self.cfg.latent_channels}, h, w], got {tuple(z.shape)}")
        if self.cfg.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        if not self.cfg.mask_channel:
            return self.decoder(z), self.log_sigma
        f = self.downsampling
        return self.decoder(z, self._ocean(z.shape[-2] * f, z.shape[-1] * f, like=z)), self.log_sigma

    # --- objective ------------------------------------------------------------------------------

    def reconstruction_nll(self, x_norm: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
        """Per-element NLL in normalised units under the configured decoder."""
        sigma = self._channel(log_sigma.float().exp())
        if self.cfg.decoder == "gaussian":
            return gaussian_nll(x_norm.float(), mu.float(), sigma)
        lo, up = self.normalized_bounds()
        return censored_gaussian_nll(
            x_norm.float(), mu.float(), sigma, self._channel(lo), self._channel(up), atol=BOUND_TOLERANCE
        )

    def loss(self, x_norm: Tensor, mask: Tensor, eps: Tensor) -> dict[str, Tensor]:
        """NLL (masked mean over ocean cells) + beta * KL, with caller-supplied noise ``eps``.

        ``mask`` is [H, W] or [B, 1, H, W] with 1 = ocean; ``eps`` has the latent's shape, so the
        caller controls the randomness (reproducible across ranks and resumes).
        """
        mean, logvar = self.encode(x_norm)
        if eps.shape != mean.shape:
            raise ValueError(f"VAE eps has shape {tuple(eps.shape)}, latent is {tuple(mean.shape)}")
        z = mean + torch.exp(0.5 * logvar) * eps
        mu, log_sigma = self.decode_params(z)
        nll_el = self.reconstruction_nll(x_norm, mu, log_sigma)
        m = _expand_mask(mask, nll_el).expand_as(nll_el)
        nll = torch.where(m > 0, nll_el * m, torch.zeros_like(nll_el)).sum() / m.sum().clamp_min(1e-9)
        mean_f, logvar_f = mean.float(), logvar.float()
        kl = 0.5 * (mean_f.square() + logvar_f.exp() - 1.0 - logvar_f).mean()
        return {"loss": nll + self.cfg.beta * kl, "nll": nll, "kl": kl}

    # --- generation -----------------------------------------------------------------------------

    @torch.no_grad()
    def decode(
        self,
        z: Tensor,
        mask: Tensor | None = None,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Latent z (not standardised) -> physical fields, clipped to the bounds, land = 0 (no gradient).

        Deterministic: clamp(mu, l, u). With ``sample``: clamp(mu + sigma * eps, l, u), an exact
        draw from the censored Gaussian (docs/science.md §3).
        """
        mu, log_sigma = self.decode_params(z)
        mu = mu.float()
        if sample:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            mu = mu + self._channel(log_sigma.float().exp()) * eps
        phys = self.denormalize(mu)
        phys = torch.clamp(phys, min=self._channel(self.lower), max=self._channel(self.upper))
        if mask is not None:
            m = _expand_mask(mask, phys)
            phys = torch.where(m > 0, phys, torch.zeros_like(phys))
        return phys.contiguous()


def _expand_mask(mask: Tensor, like: Tensor) -> Tensor:
    """[H, W] or [B, 1, H, W] mask -> broadcastable to ``like`` [B, C, H, W], same device/dtype."""
    mask = mask.to(device=like.device, dtype=like.dtype)
    if mask.dim() == 2:
        mask = mask[None, None]
    if mask.dim() != 4 or mask.shape[-2:] != like.shape[-2:]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit fields {tuple(like.shape)}")
    return mask
