"""Train a new VAE decoder against a trained, frozen encoder (``vae.frozen_encoder=RUN_DIR``).

Why: latent data sets and the latent diffusion runs trained on them depend only on the
encoder. Swapping the decoder (e.g. for the light one) while keeping the encoder bit-identical
keeps every latent valid: ``hpc-seaice encode`` with the new run writes the same latents, so an
existing latent diffusion run samples through the new decoder unchanged.

The encoder's weights (its EMA weights, the ones ``encode`` uses) and the normalisation buffers
are loaded from the source run's latest checkpoint; the encoder's parameters are frozen
(``requires_grad`` False: the optimizers skip them, DDP does not reduce them). The decoder and
the per-variable scale start fresh and are trained as usual. The source run is needed only to
start: a resumed run's own checkpoint holds the frozen encoder, so the source may since have
moved or been deleted.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hpc_seaice.config import load_config
from hpc_seaice.errors import UserError
from hpc_seaice.runtime.checkpoint import complete_checkpoints, find_checkpoint, load_states

# State-dict entries taken from the source run: the encoder and the data normalisation.
SOURCE_PREFIXES = ("encoder.",)
SOURCE_BUFFERS = ("data_mean", "data_std", "lower", "upper")


def freeze_encoder(vae: nn.Module, source: str | Path, run_dir: str | Path) -> None:
    """Freeze ``vae``'s encoder: from ``source`` on a fresh start, as it is when ``run_dir`` resumes.

    A run folder that holds any checkpoint always resumes from one (never starts over), and the
    checkpoint's encoder replaces whatever is loaded here.
    """
    if complete_checkpoints(run_dir):
        vae.encoder.requires_grad_(False)
        return
    freeze_encoder_from(vae, source)


def freeze_encoder_from(vae: nn.Module, run_dir: str | Path) -> None:
    """Load ``run_dir``'s encoder (EMA weights) into ``vae`` and freeze it; user errors in one line."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"config key 'vae.frozen_encoder': {run_dir} is not a run folder (no config.yaml)")
    source_cfg = load_config(run_dir / "config.yaml")
    if source_cfg.stage != "autoencoder":
        raise UserError(f"config key 'vae.frozen_encoder': {run_dir} is a {source_cfg.stage} run, not an autoencoder")
    try:
        folder = find_checkpoint(run_dir, "latest")
    except UserError as exc:
        raise UserError(f"config key 'vae.frozen_encoder': {exc}") from None
    model_state, _ = load_states(folder, torch.device("cpu"))
    source = model_state["ema"]["module"]
    wanted = {k: v for k, v in source.items() if k.startswith(SOURCE_PREFIXES) or k in SOURCE_BUFFERS}
    own = vae.state_dict()
    for key, value in wanted.items():
        if key not in own or own[key].shape != value.shape:
            have = tuple(own[key].shape) if key in own else "missing"
            raise UserError(
                f"config key 'vae.frozen_encoder': {folder} has {key} {tuple(value.shape)}, this vae has {have} "
                "(the encoder settings must match the source run's)"
            )
    missing = [k for k in own if k.startswith(SOURCE_PREFIXES) and k not in wanted]
    if missing:
        raise UserError(f"config key 'vae.frozen_encoder': {folder} lacks {missing[0]}")
    vae.load_state_dict(wanted, strict=False)
    vae.encoder.requires_grad_(False)
