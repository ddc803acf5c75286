"""Sampling a latent run uses the coast of the fields its latents encode, and says in one line
when that fields data set has moved."""

from __future__ import annotations

import shutil

import numpy as np
import torch
import torch.nn.functional as F
from helpers import hpc_seaice
from helpers_runs import latent_run_chain

from hpc_seaice.data.format.static import read_static
from hpc_seaice.inference.loading import load_inference_model


def test_a_latent_run_samples_with_the_ocean_fraction_of_its_fields(tiny_dataset_copy, tmp_path):
    data = tiny_dataset_copy
    vae, latents, ldm, config = latent_run_chain(data, data, tmp_path)

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
