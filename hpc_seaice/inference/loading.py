"""Loading a trained run for inference: its EMA weights, config and data set, and its VAE if latent.

The run's checkpoint is verified (hashes in meta.json) and its data set compared with the one it
recorded at training; a damaged checkpoint is one line naming the earlier one that can be used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpc_seaice.config import load_config
from hpc_seaice.data.manifest import read_manifest
from hpc_seaice.data.static import read_static
from hpc_seaice.errors import UserError
from hpc_seaice.models.build import build_stage_model
from hpc_seaice.runtime.checkpoint import find_checkpoint, load_module_state, load_states
from hpc_seaice.runtime.identity import check_identity
from hpc_seaice.runtime.integrity import verify_files
from hpc_seaice.runtime.startup import earlier_usable


@dataclass
class LoadedRun:
    """A trained run, ready for inference (EMA weights, eval mode)."""

    run_dir: Path
    config: Any  # ExperimentConfig
    step: int
    model: nn.Module  # VAE for autoencoder runs, UNet for diffusion runs
    data_manifest: Any  # Manifest of the data the run trained on
    data_static: Any  # Static of that data set (mask, lat/lon, normalisation)
    vae: nn.Module | None = None  # latent diffusion runs: the frozen VAE (its EMA weights)
    vae_run: LoadedRun | None = None

    @property
    def is_latent(self) -> bool:
        return self.vae is not None


def load_inference_model(
    run_dir: str | Path, step: str | int = "latest", device: torch.device | str = "cpu"
) -> LoadedRun:
    """Load a run's EMA weights (and for latent diffusion the VAE it was trained on)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    folder = find_checkpoint(run_dir, step)
    device = torch.device(device)
    try:
        verify_files(folder)
        model_state, trainer_state = load_states(folder, device)
    except UserError as exc:
        earlier = earlier_usable(run_dir, folder.name)
        hint = f"; the earlier checkpoint {earlier.name} can be used: --checkpoint {earlier.name}" if earlier else ""
        raise UserError(f"{exc}{hint}") from None
    manifest = read_manifest(cfg.data.path)
    static = read_static(cfg.data.path)
    check_identity(run_dir, cfg.data.path, manifest, static)
    model = build_stage_model(cfg, manifest, static)
    load_module_state(model, model_state["ema"]["module"], str(folder))
    model.to(device).eval().requires_grad_(False)
    loaded = LoadedRun(run_dir, cfg, int(trainer_state["step"]), model, manifest, static)
    if manifest.kind == "latent":
        source = manifest.source or {}
        vae_dir = source.get("autoencoder_run")
        if not vae_dir:
            raise UserError(f"{cfg.data.path}: latent data set does not record its autoencoder_run")
        loaded.vae_run = load_inference_model(vae_dir, source.get("autoencoder_step", "latest"), device)
        loaded.vae = loaded.vae_run.model
    return loaded
