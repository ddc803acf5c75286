"""Loading a trained run for inference: its EMA weights, config and data set, and its VAE if latent.

The run's checkpoint is verified (hashes in meta.json) and its data set compared with the one it
recorded at training; a damaged checkpoint is one line naming one that can be used, and how. A
latent run's VAE and physical grid come from its latent set's
:class:`~hpc_seaice.data.format.provenance.LatentProvenance`: the VAE weights must be the ones that
encoded the set (:func:`load_vae`) and the fields set the one it encodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpc_seaice.config import load_config
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.provenance import WEIGHTS_FILE, LatentProvenance
from hpc_seaice.data.format.static import Static, read_static
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import sha256_file
from hpc_seaice.inference.refine import check_base_identity, check_same_grid, latent_base
from hpc_seaice.models.build import build_stage_model
from hpc_seaice.runtime.checkpoint import (
    CHECKPOINTS,
    LATEST,
    STATE_FILES,
    earlier_usable,
    find_checkpoint,
    load_module_state,
    load_states,
)
from hpc_seaice.runtime.identity import check_identity, require_data_set
from hpc_seaice.runtime.integrity import verify_files


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
    provenance: LatentProvenance | None = None  # latent runs: where their VAE and physical grid come from
    base: LoadedRun | None = None  # refiner runs: the latent run whose decoded samples they refine

    @property
    def sampler_steps(self) -> int:
        """The default Heun steps of ``sample``: the generating run's (a refiner's latent run's)."""
        return (self.base or self).config.diffusion.sampler_steps

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def field_static(self) -> Static:
        """The static file of the physical fields its samples lie on (mask, lat/lon): for a latent
        run, the fields set its latents encode (not the VAE's own training set)."""
        return self.provenance.static if self.provenance is not None else self.data_static


def check_vae_weights(provenance: LatentProvenance) -> Path:
    """The VAE checkpoint folder that encoded a latent set, its weights checked against the recorded sha256.

    Training, validation and sampling all refuse a VAE retrained in the same folder or weights
    replaced in place, in one line naming the latent set and the weights file.
    """
    run = provenance.require_vae()
    if not (run / "config.yaml").is_file():
        raise UserError(
            f"{provenance.latent_path}: the VAE run it was encoded with, {run}, is gone (no config.yaml); "
            "put it back or re-encode"
        )
    folder = find_checkpoint(run, provenance.autoencoder_step)
    weights = folder / WEIGHTS_FILE
    if weights.is_file():  # a missing file is load_states' one line
        provenance.check_weights(sha256_file(weights), weights)
    return folder


def load_vae(provenance: LatentProvenance, device: torch.device | str = "cpu") -> LoadedRun:
    """The VAE that encoded a latent set (checked), its land mask the one of the fields set it encoded."""
    check_vae_weights(provenance)
    vae_run = load_inference_model(provenance.autoencoder_run, provenance.autoencoder_step, device, option=None)
    if vae_run.config.vae.mask_channel:  # decode on the coast of the encoded fields, as encode saw it
        vae_run.model.set_ocean_mask(torch.as_tensor(provenance.mask, dtype=torch.float32, device=device))
    return vae_run


def load_inference_model(
    run_dir: str | Path,
    step: str | int = "latest",
    device: torch.device | str = "cpu",
    option: str | None = "--checkpoint",
) -> LoadedRun:
    """Load a run's EMA weights (and for latent diffusion the VAE it was trained on).

    The run's data set (``data.path``) must match the identity the run recorded. A damaged checkpoint
    names one that works and how to choose it: the caller's ``option``, ``latest`` when it has
    none (""), nothing when the step is fixed (None: a latent set's VAE).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    device = torch.device(device)
    folder = None  # ``latest`` missing or naming a broken folder: the hint names a checkpoint that works
    try:
        folder = find_checkpoint(run_dir, step)
        verify_files(folder, only=STATE_FILES)  # what inference reads; not the optimizer state
        model_state, trainer_state = load_states(folder, device)
    except UserError as exc:
        if folder is None and str(step) != "latest":
            raise  # an explicit step that does not exist: the message lists those that do
        earlier = earlier_usable(run_dir, folder.name if folder else "~")
        hint = ""
        if earlier is not None and option is not None:  # none usable: the damage alone is the message
            latest = run_dir / CHECKPOINTS / LATEST
            how = f"{option} {earlier.name}" if option else f"write {earlier.name} into {latest}"
            hint = f"; the checkpoint {earlier.name} can be used: {how}"
        raise UserError(f"{exc}{hint}") from None
    data = str(cfg.data.path)
    require_data_set(run_dir, data)
    manifest = read_manifest(data)
    static = read_static(data)
    check_identity(run_dir, data, manifest, static)
    provenance = LatentProvenance.of(data, manifest) if manifest.kind == "latent" else None
    model = build_stage_model(cfg, manifest, static, provenance)
    load_module_state(model, model_state["ema"]["module"], str(folder))
    model.to(device).eval().requires_grad_(False)
    loaded = LoadedRun(run_dir, cfg, int(trainer_state["step"]), model, manifest, static, provenance=provenance)
    if provenance is not None:
        provenance.check_fields()  # before the VAE is loaded: its decode mask comes from there
        loaded.vae_run = load_vae(provenance, device)
        loaded.vae = loaded.vae_run.model
    if cfg.stage == "refiner":
        base = latent_base(cfg, run_dir)
        check_same_grid(base, static, f"{run_dir} (data set {data})")
        check_base_identity(trainer_state.get("task", {}).get("base"), base, str(run_dir), pairs=False)
        loaded.base = load_inference_model(base.run_dir, cfg.refine.latent_checkpoint, device, option=None)
    return loaded
