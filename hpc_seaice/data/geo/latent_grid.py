"""The fields' land-sea mask on a latent grid: what the latent denoiser sees of the coast.

The denoiser cannot see land in the latents themselves; it gets the ocean fraction of each latent
cell (the block mean of the fields' mask) as an input channel. A latent data set records the
fields data set it was encoded from, whose ``static.h5`` has the mask.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hpc_seaice.data.format.manifest import Manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.errors import UserError


def block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Means over factor x factor blocks: a field-grid map on the latent grid."""
    h, w = values.shape
    if h % factor or w % factor:
        raise ValueError(f"grid {h} x {w} is not divisible by {factor}")
    return values.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def latent_ocean_fraction(data_path: str | os.PathLike, manifest: Manifest) -> np.ndarray:
    """Ocean fraction [h, w] of each latent cell, from the mask of the fields the latents encode."""
    fields = (manifest.source or {}).get("fields_dataset")
    if not fields or not Path(fields).is_dir():
        raise UserError(
            f"{data_path}: the latent data set does not lead to its fields data set "
            f"(manifest source.fields_dataset = {fields!r}), whose land-sea mask unet.mask_channel needs; "
            "put that data set back there or re-encode with it (a new run may also set unet.mask_channel=false)"
        )
    mask = np.asarray(read_static(fields).mask, dtype=np.float64)
    h, w = manifest.grid
    if mask.shape[0] % h or mask.shape[1] % w or mask.shape[0] // h != mask.shape[1] // w:
        raise UserError(f"{fields}: mask {mask.shape} is no whole multiple of the latent grid {h} x {w}")
    return block_mean(mask, mask.shape[0] // h).astype(np.float32)
