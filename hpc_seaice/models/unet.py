"""The one U-Net denoiser family, used in data space (5 x 512 x 512) and latent space (16 x 64 x 64).

Layout (a UViT in the authors' style, docs/science.md §2), with L = len(channel_mult) levels:

    conv 3x3 in (on the channels, plus the land-sea mask channel when ``mask_channel``, plus
        ``cond_channels`` conditioning channels given with each call: a refiner's decoded field)
    level i = 0..L-1 (resolution H/2^i, width base*mult[i]):
        blocks_per_level blocks (ConvNeXt or ResNet, FiLM from the noise embedding) -> skip
        2x2 stride-2 conv down to the next level
    bottleneck at H/2^L, width base*mult[-1]: position features (``position``), then
        transformer blocks (self-attention + MLP)
    level i = L-1..0: up-sample x2 (nearest + conv 3x3, or the older 2x2 transposed conv),
        concat skip, 1x1 conv, blocks_per_level blocks
    GroupNorm -> GELU -> conv 1x1 out (zero-initialised: the untrained net predicts v = 0)

So the input side must be divisible by 2^L and self-attention only ever runs on the
(H/2^L) x (W/2^L) bottleneck tokens, never on a large grid: the forward raises a ValueError
when the bottleneck is wider than ``attention_max_side`` (add a level instead).

Land: the inputs are 0 on land, which in normalised units reads as "average ice". With
``mask_channel`` the network also gets the ocean fraction of each cell (the 0/1 land-sea mask in
data space, its block mean on a latent grid), set once per data set with
:meth:`UNet.set_ocean_fraction`; unset, the grid counts as all ocean.

The noise level enters through the normalised log-SNR: (gamma - gamma_min)/(gamma_max -
gamma_min) * 1000 -> sinusoidal features -> MLP -> FiLM scale/shift in every block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpc_seaice.config import UNetConfig
from hpc_seaice.models.layers import (
    BLOCKS,
    GridPosition,
    TransformerBlock,
    group_norm,
    sinusoidal_embedding,
    upsample_layer,
)


class NoiseEmbedding(nn.Module):
    """Normalised log-SNR -> sinusoidal features -> Linear-GELU-Linear -> GELU."""

    def __init__(self, dim: int, gamma_min: float, gamma_max: float) -> None:
        super().__init__()
        if not gamma_max > gamma_min:
            raise ValueError(f"gamma_max ({gamma_max}) must exceed gamma_min ({gamma_min})")
        self.dim = dim
        self.gamma_min = float(gamma_min)
        self.gamma_max = float(gamma_max)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU())

    def forward(self, gamma: Tensor) -> Tensor:
        t = (gamma.float() - self.gamma_min) / (self.gamma_max - self.gamma_min) * 1000.0
        return self.mlp(sinusoidal_embedding(t, self.dim))


class UNet(nn.Module):
    """v-prediction network: ``forward(x [B,C,H,W], gamma [B]) -> v_hat [B,C,H,W]``.

    ``gamma`` is the raw log-SNR; the net normalises it with the training range given here.
    """

    def __init__(self, cfg: UNetConfig, gamma_min: float = -20.0, gamma_max: float = 20.0) -> None:
        super().__init__()
        if cfg.block not in BLOCKS:
            raise ValueError(f"unet.block {cfg.block!r} is not one of {sorted(BLOCKS)}")
        if not cfg.channel_mult:
            raise ValueError("unet.channel_mult must name at least one level")
        self.cfg = cfg
        self.levels = len(cfg.channel_mult)
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        emb = cfg.embedding_dim
        block = BLOCKS[cfg.block]

        def make_block(cin: int, cout: int) -> nn.Module:
            return block(
                cin, cout, embedding_dim=emb, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout, kernel_size=cfg.kernel_size
            )

        if cfg.position not in ("sincos", "none"):
            raise ValueError(f"unet.position {cfg.position!r} is not one of ('sincos', 'none')")
        self.embedding = NoiseEmbedding(emb, gamma_min, gamma_max)
        self.conv_in = nn.Conv2d(cfg.in_channels + int(cfg.mask_channel) + cfg.cond_channels, widths[0], 3, padding=1)
        # The data set's ocean fraction [1, 1, H, W]: a property of the grid, not a weight, so it
        # is not saved with the weights; the run sets it from its data set when it builds the net.
        self.register_buffer("ocean_fraction", None, persistent=False)

        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, width in enumerate(widths):
            self.down_blocks.append(nn.ModuleList(make_block(width, width) for _ in range(cfg.blocks_per_level)))
            self.downsample.append(nn.Conv2d(width, widths[min(i + 1, self.levels - 1)], 2, stride=2))

        mid = widths[-1]
        use_position = cfg.position == "sincos" and cfg.bottleneck_blocks > 0
        self.position = GridPosition(mid) if use_position else None
        self.bottleneck = nn.ModuleList(
            TransformerBlock(mid, cfg.heads, emb, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout)
            for _ in range(cfg.bottleneck_blocks)
        )

        self.upsample = nn.ModuleList()
        self.merge = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i, width in enumerate(widths):
            self.upsample.append(upsample_layer(widths[min(i + 1, self.levels - 1)], width, cfg.upsample))
            self.merge.append(nn.Conv2d(2 * width, width, 1))
            self.up_blocks.append(nn.ModuleList(make_block(width, width) for _ in range(cfg.blocks_per_level)))

        self.norm_out = group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], cfg.in_channels, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def set_ocean_fraction(self, fraction: Tensor | None) -> None:
        """The ocean fraction per cell of the grid this net runs on ([H, W], 1 = ocean; None = all ocean)."""
        if fraction is not None:
            fraction = torch.as_tensor(fraction, dtype=torch.float32)
            if fraction.dim() != 2:
                raise ValueError(f"ocean fraction must be [H, W], got {tuple(fraction.shape)}")
            fraction = fraction[None, None].to(self.conv_in.weight.device)
        self.ocean_fraction = fraction

    def _mask_input(self, x: Tensor, ocean: Tensor | None) -> Tensor:
        """``x`` with the ocean-fraction channel appended (``ocean`` overrides the stored one)."""
        ocean = self.ocean_fraction if ocean is None else ocean
        if ocean is None:
            ocean = torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
        elif ocean.dim() == 2:
            ocean = ocean[None, None]
        if ocean.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"UNet ocean fraction {tuple(ocean.shape[-2:])} does not fit input {tuple(x.shape[-2:])}")
        ocean = ocean.to(device=x.device, dtype=x.dtype).expand(x.shape[0], 1, *x.shape[-2:])
        return torch.cat([x, ocean], dim=1)

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError naming the problem if ``x`` does not fit this network's geometry."""
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"UNet expects [B, {self.cfg.in_channels}, H, W] input, got {tuple(x.shape)}")
        factor = 2**self.levels
        h, w = x.shape[-2:]
        if h % factor or w % factor:
            raise ValueError(f"UNet with {self.levels} levels needs H and W divisible by {factor}, got {h} x {w}")
        side = max(h, w) // factor
        if self.cfg.bottleneck_blocks and side > self.cfg.attention_max_side:
            raise ValueError(
                f"UNet bottleneck would attend over {h // factor} x {w // factor} tokens, more than "
                f"unet.attention_max_side={self.cfg.attention_max_side}; add a level to channel_mult"
            )

    def forward(self, x: Tensor, gamma: Tensor, ocean: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        """v_hat for ``x`` at log-SNR ``gamma``; ``ocean`` ([H, W] or [B, 1, H, W]) overrides the
        stored ocean fraction for this call; ``cond`` [B, cond_channels, H, W] is required exactly
        when the config has conditioning channels."""
        self.check_input(x)
        if gamma.dim() == 0:
            gamma = gamma.expand(x.shape[0])
        if self.cfg.mask_channel:
            x = self._mask_input(x, ocean)
        if self.cfg.cond_channels:
            expected = (x.shape[0], self.cfg.cond_channels, *x.shape[-2:])
            if cond is None or tuple(cond.shape) != expected:
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(
                    f"UNet with cond_channels={self.cfg.cond_channels} needs cond of shape {expected}, got {got}"
                )
            x = torch.cat([x, cond.to(x.dtype)], dim=1)
        elif cond is not None:
            raise ValueError("UNet got cond but its config has cond_channels=0")
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        emb = self.embedding(gamma)

        h = self.conv_in(x)
        skips = []
        for blocks, down in zip(self.down_blocks, self.downsample):
            for blk in blocks:
                h = blk(h, emb)
            skips.append(h)
            h = down(h)

        if len(self.bottleneck):
            b, c, hh, ww = h.shape
            tokens = h.flatten(2).transpose(1, 2)
            if self.position is not None:
                tokens = self.position(tokens, hh, ww)
            for blk in self.bottleneck:
                tokens = blk(tokens, emb)
            h = tokens.transpose(1, 2).reshape(b, c, hh, ww)
            if self.cfg.channels_last:
                h = h.contiguous(memory_format=torch.channels_last)

        for i in reversed(range(self.levels)):
            h = self.upsample[i](h)
            h = self.merge[i](torch.cat([h, skips[i]], dim=1))
            for blk in self.up_blocks[i]:
                h = blk(h, emb)

        return self.conv_out(F.gelu(self.norm_out(h)))
