"""Sampling a latent run uses the coast of the fields its latents encode, and says in one line
when that fields data set has moved."""

from __future__ import annotations

import shutil

import numpy as np
import torch
import torch.nn.functional as F
from helpers import hpc_seaice, tiny_autoencoder_config, tiny_diffusion_config

from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.static import read_static
from hpc_seaice.inference.loading import load_inference_model
from hpc_seaice.train.trainer import run_training


def test_a_latent_run_samples_with_the_ocean_fraction_of_its_fields(tiny_dataset_copy, tmp_path):
    data = tiny_dataset_copy
    vae = tmp_path / "vae"
    assert run_training(config_from_dict(tiny_autoencoder_config(data, vae, train={"max_steps": 2}))) == 0
    latents = tmp_path / "latents"
    hpc_seaice("encode", "--autoencoder", str(vae), "--data", str(data), "--out", str(latents))
    ldm = tmp_path / "ldm"
    config = tiny_diffusion_config(latents, ldm, train={"max_steps": 1, "checkpoint_every": 1})
    config["unet"]["in_channels"] = 4
    assert run_training(config_from_dict(config)) == 0

    mask = torch.as_tensor(np.asarray(read_static(data).mask, dtype=np.float32))
    loaded = load_inference_model(ldm)
    expected = F.avg_pool2d(mask[None, None], 8)  # ocean fraction of each 8 x 8 block, computed apart
    assert ((expected > 0) & (expected < 1)).any()
    torch.testing.assert_close(loaded.model.ocean_fraction, expected)
    torch.testing.assert_close(loaded.vae.ocean_mask, mask[None, None])

    shutil.move(data, tmp_path / "moved")
    proc = hpc_seaice("sample", "--run", str(ldm), "--num", "1", "--out", str(tmp_path / "s.nc"), check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(data) in errors[0], proc.stderr[-2000:]
    assert "put that data set back" in errors[0]  # the way out for a trained run: its layout is fixed
