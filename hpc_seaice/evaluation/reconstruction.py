"""Autoencoder reconstructions scored by ``hpc-seaice evaluate --reconstruct RUN_DIR``.

The deterministic reconstruction (encoder mean, decoder clamp(mu)) of every reference state
shows what the autoencoder alone loses before any diffusion model is trained on its latents.
``RUN_DIR`` is an autoencoder run, or a latent diffusion run (then the autoencoder it was
trained on, as recorded by its latent data set, is scored).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation.metrics import masked_mean
from hpc_seaice.evaluation.spectra import band_log_ratios, log_ratio
from hpc_seaice.inference.loading import load_inference_model
from hpc_seaice.models.vae import VAE


@dataclass
class Reconstruction:
    """An autoencoder run whose reconstructions of the reference states are scored."""

    name: str
    run_dir: Path
    step: int  # the autoencoder's checkpoint step
    vae: VAE
    sq_error_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(VARIABLES)))
    error_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(VARIABLES)))
    psd_sum: np.ndarray | None = None
    count: int = 0
    example: np.ndarray | None = None

    def add(self, states: np.ndarray, mask: np.ndarray, psd_sit: Callable[[np.ndarray], np.ndarray]) -> None:
        """Reconstruct ``[B, C, H, W]`` reference states and accumulate errors and the thickness PSD."""
        pred = reconstruct_states(self, states.astype(np.float32), mask)
        err = pred - states
        self.sq_error_sum += masked_mean(err**2, mask).sum(axis=0)
        self.error_sum += masked_mean(err, mask).sum(axis=0)
        psd = psd_sit(pred[:, VARIABLES.index("sit")]) * len(states)
        self.psd_sum = psd if self.psd_sum is None else self.psd_sum + psd
        self.count += len(states)
        if self.example is None:
            self.example = pred[0]

    def scores(self, ref_psd: np.ndarray, wavelength_km: np.ndarray) -> dict[str, Any]:
        """RMSE and bias per variable over the states added, and the thickness spectrum against ``ref_psd``."""
        psd = self.psd_sum / self.count
        return {
            "run": str(self.run_dir),
            "step": self.step,
            "variables": {
                var: {"rmse": math.sqrt(self.sq_error_sum[c] / self.count), "bias": self.error_sum[c] / self.count}
                for c, var in enumerate(VARIABLES)
            },
            "psd_sit": psd.tolist(),
            "psd_sit_log10_ratio": log_ratio(psd, ref_psd),
            "psd_sit_band_log10_ratio": band_log_ratios(psd, ref_psd, wavelength_km),
        }


def evaluation_device() -> torch.device:
    """The current GPU when there is one (a year of 512 x 512 states is slow to encode on CPU), else CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def load_reconstruction(run_dir: Path, name: str, grid: tuple[int, int]) -> Reconstruction:
    """Load an autoencoder (its EMA weights) for scoring; user errors for a wrong run or grid."""
    if not run_dir.is_dir():
        raise UserError(f"--reconstruct: run folder {run_dir} does not exist")
    loaded = load_inference_model(run_dir, device=evaluation_device(), option="")  # evaluate has no --checkpoint
    if loaded.is_latent:
        loaded = loaded.vae_run  # a latent diffusion run: score the autoencoder it was trained on
    elif loaded.config.stage != "autoencoder":
        raise UserError(f"--reconstruct: run {run_dir} has no autoencoder (a data-space {loaded.config.stage} run)")
    trained_on = tuple(loaded.data_manifest.grid)
    if trained_on != tuple(grid):
        raise UserError(
            f"grid mismatch: autoencoder run {loaded.run_dir} was trained on {trained_on[0]}x{trained_on[1]}, "
            f"evaluation data set is {grid[0]}x{grid[1]}"
        )
    return Reconstruction(name=name, run_dir=run_dir, step=loaded.step, vae=loaded.model)


def reconstruct_states(rec: Reconstruction, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Deterministic reconstruction (encoder mean, decoder clamp(mu)) of ``[B, C, H, W]`` states."""
    vae = rec.vae
    device = next(vae.parameters()).device
    x = torch.from_numpy(states).to(device=device, dtype=torch.float32)
    m = torch.from_numpy(mask.astype(np.float32)).to(device)
    with torch.no_grad():
        x_norm = vae.normalize(x) * m
        mean, _ = vae.encode(x_norm)
        out = vae.decode(mean, mask=m)
    return out.detach().cpu().numpy().astype(np.float64)
