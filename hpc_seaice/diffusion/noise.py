"""Noise drawn per sample from its global position, so it does not depend on how work is split.

Training (a sample's place in the run's data order) and sampling (a sample's index in the
output) both seed each sample's noise from ``(seed, salt, position)``, never from a rank's RNG
stream: a global batch gets the same noise on 1 or N ranks, a resumed run the same noise as an
uninterrupted one, and sample i of ``hpc-seaice sample`` is the same whatever the number of ranks.
Salts keep the streams of different uses of randomness apart.
"""

from __future__ import annotations

import numpy as np
import torch


def mix_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def per_sample_normal(
    positions: torch.Tensor, shape: tuple[int, ...], seed: int, salt: int, device: torch.device
) -> torch.Tensor:
    """Standard normal noise of ``shape`` for each sample, seeded from (seed, salt, position)."""
    generator = torch.Generator()
    out = torch.empty((len(positions), *shape))
    for i, pos in enumerate(positions.tolist()):
        generator.manual_seed(mix_seed(seed, salt, pos))
        out[i] = torch.randn(shape, generator=generator)
    return out.to(device)
