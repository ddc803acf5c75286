"""The fields' land-sea mask on a latent grid: what the latent denoiser sees of the coast.

The denoiser cannot see land in the latents themselves; it gets the ocean fraction of each latent
cell (the block mean of the fields' mask) as an input channel, computed by
:class:`~hpc_seaice.data.format.provenance.LatentProvenance` from the fields set the latents encode.
"""

from __future__ import annotations

import numpy as np


def block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Means over factor x factor blocks: a field-grid map on the latent grid."""
    h, w = values.shape
    if h % factor or w % factor:
        raise ValueError(f"grid {h} x {w} is not divisible by {factor}")
    return values.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
