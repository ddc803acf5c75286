"""A light VAE decoder: capacity at the latent and the next resolution, sub-pixel up-sampling.

Why: a generated latent sample costs 39 latent denoiser calls plus one decoder pass, and the
mirror decoder (``vae.Decoder``) spends most of its FLOPs in dense 3 x 3 convolutions at the
two or three finest resolutions (at paper geometry about 88 GFLOP per sample, as much as 30
latent denoiser calls). This decoder keeps its blocks on the latent grid (h x w), on the next
one (2h x 2w) and optionally on one more (4h x 4w, a third width in ``vae.light_channels``), and
reaches the full grid (f h x f w, f the VAE's down-sampling) with a sub-pixel head (Shi et al. 2016): a 3 x 3
convolution to C * r^2 channels on the last grid, then ``PixelShuffle(r)``, which only rearranges
values. The up-sampling between levels is sub-pixel too. The third level is thin and cheap (16
channels at 256 x 256 at paper geometry) and brings the head's jump down from 4x to 2x per side:
in ``benchmarks/decoder_quality.py`` it lowered the reconstruction errors of every variable and
the marginal-ice-zone area error against the two-level decoder.

An optional thin refinement at full resolution (``vae.refine_channels`` > 0) sees the head's
output and the land mask and adds a residual correction: two 3 x 3 convolutions with a few
channels, zero-initialised at the output so the decoder starts as the plain sub-pixel one. The
mask is an optional input of ``forward``; without it every cell counts as ocean.

Widths are ``vae.light_channels`` = [width on the latent grid, on the next grid(, on the one
after)]; blocks per level are ``vae.blocks_per_level``, of type ``vae.block``. At the paper
geometry (16 x 64 x 64 -> 5 x 512 x 512, widths 128, 48, 16, two ResNet blocks per level,
refinement 16) it costs about 12.8 GFLOP per sample (``python -m hpc_seaice.models.describe
paper-vae``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpc_seaice.config import VAEConfig
from hpc_seaice.models.layers import BLOCKS, group_norm


class SubPixelUp(nn.Module):
    """3 x 3 convolution to ``out_channels * r^2`` channels, then ``PixelShuffle(r)``: r x finer."""

    def __init__(self, in_channels: int, out_channels: int, r: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels * r * r, 3, padding=1)
        self.shuffle = nn.PixelShuffle(r)
        _icnr_(self.conv, r)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.conv(x))


def _icnr_(conv: nn.Conv2d, r: int) -> None:
    """ICNR initialisation (Aitken et al. 2017): the r^2 sub-pixels of a channel start equal.

    A randomly initialised sub-pixel convolution starts with a checkerboard pattern; repeating
    one kernel (and bias) over the r^2 phases makes it start as nearest-neighbour up-sampling of
    a convolution, and lets training break the symmetry where the data ask for it.
    """
    weight, bias = conv.weight, conv.bias
    if weight.device.type == "meta":
        return
    with torch.no_grad():
        weight.copy_(weight[:: r * r].repeat_interleave(r * r, dim=0).clone())
        if bias is not None:
            bias.copy_(bias[:: r * r].repeat_interleave(r * r).clone())


class Refinement(nn.Module):
    """Thin full-resolution residual: [fields, mask] -> conv 3x3 -> SiLU -> conv 3x3 (zero init)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels + 1, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return x + self.conv2(F.silu(self.conv1(torch.cat([x, mask], dim=1))))


class LightDecoder(nn.Module):
    """Latent z [B, K, h, w] -> mu [B, C, f h, f w]: blocks at h, 2h (and 4h), sub-pixel head to f h."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        factor = 2 ** (len(cfg.channel_mult) - 1)
        if factor < 2:
            raise ValueError("vae.decoder_arch 'light' needs at least one down-sampling (two channel_mult levels)")
        widths = list(cfg.light_channels)
        if len(widths) not in (2, 3) or min(widths) < 1:
            raise ValueError(f"vae.light_channels must be two or three positive widths, got {cfg.light_channels}")
        if 2 ** (len(widths) - 1) > factor:
            raise ValueError(f"vae.light_channels: {len(widths)} levels need {2 ** (len(widths) - 1)}x down-sampling")
        if cfg.refine_channels < 0:
            raise ValueError(f"vae.refine_channels must be >= 0, got {cfg.refine_channels}")
        block = BLOCKS[cfg.block]
        self.factor = factor
        self.conv_in = nn.Conv2d(cfg.latent_channels, widths[0], 3, padding=1)
        self.coarse = nn.Sequential(*(block(widths[0], widths[0]) for _ in range(cfg.blocks_per_level)))
        self.up = SubPixelUp(widths[0], widths[1], 2)
        self.fine = nn.Sequential(*(block(widths[1], widths[1]) for _ in range(cfg.blocks_per_level)))
        self.finer: nn.Module | None = None  # the optional third level, at 4 x the latent grid
        if len(widths) == 3:
            finer = [block(widths[2], widths[2]) for _ in range(cfg.blocks_per_level)]
            self.finer = nn.Sequential(SubPixelUp(widths[1], widths[2], 2), *finer)
        self.norm_out = group_norm(widths[-1])
        r = factor // 2 ** (len(widths) - 1)  # what the head still has to up-sample
        if r > 1:
            self.head: nn.Module = SubPixelUp(widths[-1], cfg.in_channels, r)
        else:  # the last level is on the full grid already
            self.head = nn.Conv2d(widths[-1], cfg.in_channels, 3, padding=1)
        self.refine = Refinement(cfg.in_channels, cfg.refine_channels) if cfg.refine_channels else None

    def forward(self, z: Tensor, mask: Tensor | None = None) -> Tensor:
        """``mask`` (1 = ocean) is [H, W] or [B, 1, H, W] at full resolution; None: all ocean."""
        h = self.fine(self.up(self.coarse(self.conv_in(z))))
        if self.finer is not None:
            h = self.finer(h)
        x = self.head(F.silu(self.norm_out(h)))
        if self.refine is None:
            return x
        if mask is None:
            m = x.new_ones(x.shape[0], 1, *x.shape[-2:])
        else:
            m = mask.to(device=x.device, dtype=x.dtype)
            m = (m[None, None] if m.dim() == 2 else m).expand(x.shape[0], 1, *x.shape[-2:])
        return self.refine(x, m)
