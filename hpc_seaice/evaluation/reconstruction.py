"""Autoencoder reconstructions scored by ``hpc-seaice evaluate --reconstruct RUN_DIR``.

The deterministic reconstruction (encoder mean, decoder clamp(mu)) of every reference state
shows what the autoencoder alone loses before any diffusion model is trained on its latents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.variables import VARIABLES
from hpc_seaice.errors import UserError


@dataclass
class Reconstruction:
    """An autoencoder run whose reconstructions of the reference states are scored."""

    name: str
    run_dir: Path
    step: int
    vae: Any
    sq_error_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(VARIABLES)))
    error_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(VARIABLES)))
    psd_sum: np.ndarray | None = None
    count: int = 0
    example: np.ndarray | None = None


def load_reconstruction(run_dir: Path, name: str, grid: tuple[int, int]) -> Reconstruction:
    """Load an autoencoder run (its EMA weights) for scoring; user errors for a wrong run or grid."""
    if not run_dir.is_dir():
        raise UserError(f"--reconstruct: run folder {run_dir} does not exist")
    from hpc_seaice.runtime.checkpoint import load_inference_model

    loaded = load_inference_model(run_dir)
    vae = loaded.vae if getattr(loaded, "vae", None) is not None else loaded.model
    if not all(hasattr(vae, attr) for attr in ("normalize", "encode", "decode")):
        raise UserError(f"--reconstruct: run {run_dir} has no autoencoder (a data-space diffusion run?)")
    source = getattr(loaded, "vae_run", None) or loaded
    manifest = getattr(source, "data_manifest", None)
    if manifest is not None and tuple(manifest.grid) != tuple(grid):
        raise UserError(
            f"grid mismatch: autoencoder run {run_dir} was trained on {manifest.grid[0]}x{manifest.grid[1]}, "
            f"evaluation data set is {grid[0]}x{grid[1]}"
        )
    return Reconstruction(name=name, run_dir=run_dir, step=int(getattr(source, "step", -1)), vae=vae)


def reconstruct_states(rec: Reconstruction, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Deterministic reconstruction (encoder mean, decoder clamp(mu)) of ``[B, C, H, W]`` states."""
    import torch

    vae = rec.vae
    try:
        device = next(vae.parameters()).device
    except (AttributeError, StopIteration):
        device = torch.device("cpu")
    x = torch.from_numpy(states).to(device=device, dtype=torch.float32)
    m = torch.from_numpy(mask.astype(np.float32)).to(device)
    with torch.no_grad():
        x_norm = vae.normalize(x) * m
        mean, _ = vae.encode(x_norm)
        out = vae.decode(mean, mask=m)
    return out.detach().cpu().numpy().astype(np.float64)
