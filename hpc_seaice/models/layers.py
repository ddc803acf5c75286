"""Building blocks shared by the U-Net denoiser and the VAE.

The blocks follow the authors' UViT (docs/science.md §2): ConvNeXt blocks with a depthwise 7x7
convolution, GroupNorm modulated by FiLM from the noise embedding, an MLP and a layer-scale
initialised to 1e-6, so that each residual branch starts as (almost) the identity and the
deep network trains stably from the first step. The VAE uses the same blocks without FiLM.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LAYER_SCALE_INIT = 1e-6


def num_groups(channels: int, max_groups: int = 32) -> int:
    """Largest divisor of ``channels`` not above ``max_groups`` (GroupNorm needs a divisor)."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def group_norm(channels: int, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups(channels), channels, eps=1e-6, affine=affine)


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal features of ``values`` [B] -> [B, dim] (float32)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    args = values.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class FiLM(nn.Module):
    """Scale and shift per channel from the conditioning embedding: h * (1 + scale) + shift.

    Zero-initialised, so the noise level starts without influence and the block is the plain
    normalised block at initialisation.
    """

    def __init__(self, embedding_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embedding_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.proj(emb).chunk(2, dim=1)
        if h.dim() == 4:  # [B, C, H, W]
            return h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        return h * (1 + scale[:, None, :]) + shift[:, None, :]  # tokens [B, N, C]


class LayerScale(nn.Module):
    def __init__(self, channels: int, init: float = LAYER_SCALE_INIT, spatial: bool = True) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), init))
        self.spatial = spatial

    def forward(self, h: Tensor) -> Tensor:
        return h * (self.gamma[:, None, None] if self.spatial else self.gamma)


class ConvNeXtBlock(nn.Module):
    """dwconv k x k (7) -> GroupNorm (+FiLM) -> 1x1 MLP (GELU) -> layer-scale, plus the skip."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embedding_dim: int = 0,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        kernel_size: int = 7,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"ConvNeXt kernel_size (unet.kernel_size) must be a positive odd number, got {kernel_size}"
            )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.dwconv = nn.Conv2d(out_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=out_channels)
        self.norm = group_norm(out_channels, affine=embedding_dim == 0)
        self.film = FiLM(embedding_dim, out_channels) if embedding_dim else None
        hidden = mlp_ratio * out_channels
        self.mlp = nn.Sequential(
            nn.Conv2d(out_channels, hidden, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv2d(hidden, out_channels, 1),
        )
        self.scale = LayerScale(out_channels)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        x = self.skip(x)
        h = self.norm(self.dwconv(x))
        if self.film is not None:
            h = self.film(h, emb)
        return x + self.scale(self.mlp(h))


class ResNetBlock(nn.Module):
    """GroupNorm -> SiLU -> conv 3x3, GroupNorm (+FiLM) -> SiLU -> conv 3x3 -> layer-scale."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embedding_dim: int = 0,
        mlp_ratio: int = 4,  # unused: same signature as ConvNeXtBlock
        dropout: float = 0.0,
        kernel_size: int = 3,  # unused: the ResNet block's convolutions are 3x3
    ) -> None:
        super().__init__()
        del mlp_ratio, kernel_size
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, affine=embedding_dim == 0)
        self.film = FiLM(embedding_dim, out_channels) if embedding_dim else None
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.scale = LayerScale(out_channels)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            h = self.film(h, emb)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + self.scale(h)


BLOCKS: dict[str, type[nn.Module]] = {"convnext": ConvNeXtBlock, "resnet": ResNetBlock}


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP on tokens [B, N, C], both modulated by FiLM (UViT bottleneck).

    LayerNorm without affine parameters: FiLM supplies the scale and shift. Attention uses
    ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU).
    """

    def __init__(self, channels: int, heads: int, embedding_dim: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"bottleneck channels {channels} not divisible by unet.heads={heads}")
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6)
        self.film1 = FiLM(embedding_dim, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.scale1 = LayerScale(channels, spatial=False)
        self.norm2 = nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6)
        self.film2 = FiLM(embedding_dim, channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels, mlp_ratio * channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_ratio * channels, channels),
        )
        self.scale2 = LayerScale(channels, spatial=False)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        b, n, c = x.shape
        h = self.film1(self.norm1(x), emb)
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        h = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        h = self.proj(h.transpose(1, 2).reshape(b, n, c))
        x = x + self.scale1(h)
        h = self.film2(self.norm2(x), emb)
        return x + self.scale2(self.mlp(h))


def upsample_layer(in_channels: int, out_channels: int, kind: str = "nearest") -> nn.Module:
    """x2 up-sampling: nearest neighbour then a 3x3 convolution, or a 2x2 stride-2 transposed conv.

    A stride-2 transposed convolution gives each of the four output cells of a 2x2 block its own
    weights, so even a constant input comes out with a 2-cell periodic pattern: checkerboard power
    exactly at the small scales the spectra compare (Odena et al. 2016). Nearest neighbour then a
    convolution treats every output cell alike. The convolution is depthwise-separable, as in the
    ConvNeXt blocks around it: a 1x1 projection to the new width on the coarse grid (the same as
    after the nearest copy, for a quarter of the work), then a depthwise 3x3 on the fine grid. It
    costs less than the transposed convolution (a full 3x3 convolution on the fine grid made the
    demo's data-space U-Net 40 % slower on CPU). ``transposed`` stays for networks trained with it.
    """
    if kind == "transposed":
        return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
    if kind != "nearest":
        raise ValueError(f"up-sampling {kind!r} is not one of ('nearest', 'transposed')")
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels),
    )


class GridPosition(nn.Module):
    """Where each bottleneck token sits in the domain: sin/cos features of its relative row and
    column, projected to the token width.

    Self-attention is blind to position, and a sea-ice state depends on it (thick ice along the
    northern coasts, the ice edge in the marginal seas). The features use the position relative
    to the grid, (index + 0.5) / size, so one network gives the same place the same features at
    any resolution; the projection starts at zero, so the untrained network is unchanged.
    """

    def __init__(self, channels: int, frequencies: int = 4) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.proj = nn.Linear(4 * frequencies, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def features(self, height: int, width: int) -> Tensor:
        """[height * width, 4 * frequencies] in row-major token order (float32)."""
        device = self.proj.weight.device
        freqs = math.pi * 2.0 ** torch.arange(self.frequencies, dtype=torch.float32, device=device)
        rows = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
        cols = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
        r = rows[:, None, None] * freqs  # [H, 1, F]
        c = cols[None, :, None] * freqs  # [1, W, F]
        r, c = r.expand(height, width, -1), c.expand(height, width, -1)
        return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=-1).reshape(height * width, -1)

    def forward(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """Tokens [B, height * width, C] plus the position embedding of each token."""
        return tokens + self.proj(self.features(height, width).to(self.proj.weight.dtype)).to(tokens.dtype)
