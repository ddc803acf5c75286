"""From noise to physical sea-ice fields: the sampler plus the way back to data space.

A diffusion run generates in its own space: normalised fields (data-space diffusion) or
standardised latents (latent diffusion). A :class:`FieldDecoder` turns those into physical
fields clipped to the variables' bounds with land set to 0, and also returns the values before
clipping, so evaluation can count bound violations. Used by ``hpc-seaice sample`` and by the
trainer's validation images alike.

Sampling speed: the latent decoder decodes a whole batch of latents per pass (in chunks of
``decode_batch`` to bound memory at full resolution), and :func:`compile_for_sampling` wraps a
network in ``torch.compile`` for the sampler: CUDA graphs (``reduce-overhead``) on a GPU, where a
16 x 64 x 64 denoiser at small batch is bound by kernel launches, Inductor's fused kernels on a
CPU. Compiled and eager outputs agree to float tolerance (tested on CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from hpc_seaice.config import DiffusionConfig
from hpc_seaice.data.format.manifest import Manifest
from hpc_seaice.data.format.static import Static
from hpc_seaice.diffusion.sampler import VDenoiser, sample_with_config

# Latents decoded per decoder pass: a batch of this many 5 x 512 x 512 outputs stays well
# inside a GPU's memory with the light decoder, and amortises the per-pass overhead.
DECODE_BATCH = 16


PerChannel = np.ndarray | Sequence[float] | torch.Tensor  # one value per channel
Grid = np.ndarray | torch.Tensor  # [H, W]


class FieldDecoder:
    """Maps generated model-space tensors [B, C, h, w] to physical fields [B, 5, H, W]."""

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _per_channel(values: PerChannel, device: torch.device) -> torch.Tensor:
    """Per-channel values as a [1, C, 1, 1] float32 tensor that broadcasts over a batch."""
    return torch.as_tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


class DataSpaceDecoder(FieldDecoder):
    """Un-normalise (x * std + mean), clip to bounds, land to 0."""

    def __init__(
        self,
        mean: PerChannel,
        std: PerChannel,
        lower: PerChannel,
        upper: PerChannel,
        mask: Grid,
        device: torch.device,
    ) -> None:
        self.mean, self.std = _per_channel(mean, device), _per_channel(std, device)
        self.lower, self.upper = _per_channel(lower, device), _per_channel(upper, device)
        self.mask = torch.as_tensor(mask, dtype=torch.float32, device=device)

    def __call__(self, x):
        raw = (x.float() * self.std + self.mean) * self.mask
        clipped = torch.maximum(torch.minimum(raw, self.upper), self.lower) * self.mask
        return clipped, raw


class _DecoderMean(nn.Module):
    """``vae.decode_params(z)[0]`` as a module to compile: the decoder network alone would miss
    the land mask (and the memory layout) that ``decode_params`` hands it."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode_params(z)[0]


class LatentDecoder(FieldDecoder):
    """Un-standardise the latent, decode with the VAE (deterministic: clamp(mu, l, u)).

    ``mean``/``std`` are the latent data set's own statistics (its ``static.h5``): the ones the
    latent diffusion run was trained with, whatever else was encoded with the same VAE since.
    Latents are decoded ``decode_batch`` at a time; with ``compile`` the decoder pass (with its land
    mask, as ``decode_params`` gives it) runs through :func:`compile_for_sampling`.
    """

    def __init__(
        self,
        vae: nn.Module,
        mean: PerChannel,
        std: PerChannel,
        mask: Grid,
        device: torch.device,
        decode_batch: int = DECODE_BATCH,
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> None:
        if decode_batch < 1:
            raise ValueError(f"decode_batch must be >= 1, got {decode_batch}")
        self.vae = vae
        self.mean, self.std = _per_channel(mean, device), _per_channel(std, device)
        self.mask = torch.as_tensor(mask, dtype=torch.float32, device=device)
        self.decode_batch = decode_batch
        self.network = compile_for_sampling(_DecoderMean(vae), device, compile_backend) if compile else None

    def _mu(self, z: torch.Tensor) -> torch.Tensor:
        if self.network is None:
            return self.vae.decode_params(z)[0]  # one decoder pass serves both outputs
        return self.network(z)

    def __call__(self, x):
        lower, upper = (bound.view(1, -1, 1, 1) for bound in (self.vae.lower, self.vae.upper))
        fields, raws = [], []
        for chunk in x.split(self.decode_batch):
            z = chunk.float() * self.std + self.mean
            raw = self.vae.denormalize(self._mu(z).float()) * self.mask
            fields.append(torch.clamp(raw, min=lower, max=upper) * self.mask)
            raws.append(raw)
        return (fields[0], raws[0]) if len(fields) == 1 else (torch.cat(fields), torch.cat(raws))


class _SamplingNetwork(nn.Module):
    """A compiled network called once per sampler step: marks CUDA-graph steps, owns its outputs.

    With CUDA graphs (``reduce-overhead``) an output lives in a static buffer that the next
    replay overwrites; the sampler keeps outputs across calls, so each one is cloned (cheap
    next to the network).
    """

    def __init__(self, compiled: Callable[..., torch.Tensor], cuda_graphs: bool) -> None:
        super().__init__()
        self.compiled = compiled
        self.cuda_graphs = cuda_graphs

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if not self.cuda_graphs:
            return self.compiled(*args)
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(*args).clone()


def compile_for_sampling(net: nn.Module, device: torch.device, backend: str = "inductor") -> nn.Module:
    """``torch.compile`` for inference: CUDA graphs on a GPU, Inductor's default mode elsewhere.

    The network itself is not changed (no in-place compilation), so its state_dict and
    training behaviour stay as they are; shapes are static (one sampling batch size).
    ``backend``: Inductor, or a lighter one (``aot_eager``: the same graph capture without code
    generation) where compiling must be quick (``benchmarks/gpu.sh --dry`` on a CPU).
    """
    cuda_graphs = torch.device(device).type == "cuda" and backend == "inductor"
    mode = "reduce-overhead" if cuda_graphs else None
    compiled = torch.compile(net, backend=backend, mode=mode, dynamic=False)
    return _SamplingNetwork(compiled, cuda_graphs)


@torch.no_grad()
def generate(
    net: nn.Module, noise: torch.Tensor, mask: torch.Tensor | None, diffusion: DiffusionConfig, steps: int
) -> torch.Tensor:
    """Heun sampling of the v-prediction network from standard-normal noise (the run's noise range and spacing)."""
    return sample_with_config(VDenoiser(net, mask=mask), noise, diffusion, steps)


def decoder_for(
    manifest: Manifest,
    static: Static,
    vae: nn.Module | None,
    field_mask: Grid,
    device: torch.device,
) -> FieldDecoder:
    """The decoder for a diffusion run's data set: data space from its statistics, latent via the VAE."""
    if manifest.kind == "latent":
        if vae is None:
            raise ValueError("a latent-space run needs its VAE to decode")
        return LatentDecoder(vae, static.mean, static.std, field_mask, device)
    return DataSpaceDecoder(static.mean, static.std, manifest.lower, manifest.upper, static.mask, device)
