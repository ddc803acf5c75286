"""Tiny real runs trained in this process, for tests that need a trained model or its outputs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import hpc_seaice, tiny_autoencoder_config, tiny_diffusion_config

from hpc_seaice.config import config_from_dict
from hpc_seaice.train.trainer import run_training


def encoded_by_a_tiny_vae(
    data: Path, root: Path, latents: str = "latents"
) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A tiny VAE (mask channel on) trained 3 steps on ``data`` in ``root/vae``, and ``data`` encoded
    with it on one process by ``hpc-seaice encode`` into ``root/LATENTS``: (vae run, latents, the
    finished encode command)."""
    vae = root / "vae"
    assert run_training(config_from_dict(tiny_autoencoder_config(data, vae, train={"max_steps": 3}))) == 0
    out = root / latents
    proc = hpc_seaice("encode", "--autoencoder", str(vae), "--data", str(data), "--out", str(out))
    return vae, out, proc


def latent_run_chain(vae_data: Path, encode_data: Path, root: Path) -> tuple[Path, Path, Path, dict]:
    """A tiny VAE trained 2 steps on ``vae_data``, ``encode_data`` encoded with it, and a latent
    diffusion run trained 1 step on those latents: (vae run, latents, latent run, its config)."""
    vae = root / "vae"
    assert run_training(config_from_dict(tiny_autoencoder_config(vae_data, vae, train={"max_steps": 2}))) == 0
    latents = root / "latents"
    hpc_seaice("encode", "--autoencoder", str(vae), "--data", str(encode_data), "--out", str(latents))
    ldm = root / "ldm"
    config = tiny_diffusion_config(latents, ldm, train={"max_steps": 1, "checkpoint_every": 1})
    config["unet"]["in_channels"] = 4
    assert run_training(config_from_dict(config)) == 0
    return vae, latents, ldm, config
