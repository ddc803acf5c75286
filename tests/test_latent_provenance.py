"""A latent set knows its VAE and its fields: encode with another fields set than the VAE's own,
sample from it on that set's coast, and refuse replaced VAE weights or a replaced fields set in
one line naming both."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_FREQ, TINY_SHARD_SIZE
from helpers import tiny_autoencoder_config
from helpers_runs import latent_run_chain

from hpc_seaice.cli import main
from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.samples_file import read_samples
from hpc_seaice.data.format.static import read_static, static_path
from hpc_seaice.data.synth.generate import generate
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import sha256_file
from hpc_seaice.inference.loading import load_inference_model
from hpc_seaice.train.trainer import run_training


def _other_fields(root, seed: int):
    """A second synthetic set on the same 32 x 32 grid (another seed) with a coast of its own: a
    strip of ocean made land, so its mask tells it apart from the VAE's training set."""
    generate(root, grid=32, freq=TINY_FREQ, seed=seed, shard_size=TINY_SHARD_SIZE, progress=False)
    with h5py.File(static_path(root), "r+") as f:
        mask = f["mask"][()]
        rows = np.flatnonzero(mask.sum(axis=1) > 8)[:3]
        mask[rows, :] = 0
        f["mask"][...] = mask
    return root


@pytest.fixture(scope="module")
def chain(tiny_dataset, tmp_path_factory):
    """VAE trained on ``tiny_dataset``; latents of another fields set; a latent run trained 1 step."""
    root = tmp_path_factory.mktemp("provenance")
    other = _other_fields(root / "other", seed=7)
    vae, latents, ldm, config = latent_run_chain(tiny_dataset, other, root)
    return tiny_dataset, other, vae, latents, ldm, config


def test_encode_records_the_weights_and_the_fields_identity(chain):
    own, other, vae, latents, _, _ = chain
    source = read_manifest(latents).source
    weights = vae / "checkpoints" / f"step_{source['autoencoder_step']:08d}" / "model.pt"
    assert source["encoder_sha256"] == sha256_file(weights)
    assert source["fields_dataset"] == str(other.resolve())
    mask = read_static(other).mask
    assert source["fields_identity"]["ocean_cells"] == int(mask.sum()) != int(read_static(own).mask.sum())


def test_sampling_uses_the_encoded_fields_set_for_the_denoiser_and_the_decoder(chain, tmp_path):
    own, other, _, _, ldm, _ = chain
    mask = torch.as_tensor(read_static(other).mask)
    assert not torch.equal(mask, torch.as_tensor(read_static(own).mask))  # the two coasts differ
    loaded = load_inference_model(ldm)
    torch.testing.assert_close(loaded.model.ocean_fraction, F.avg_pool2d(mask[None, None], 8))
    torch.testing.assert_close(loaded.vae.ocean_mask, mask[None, None])
    np.testing.assert_array_equal(loaded.field_static.mask, mask.numpy())

    out = tmp_path / "s.nc"
    assert main(["sample", "--run", str(ldm), "--num", "2", "--steps", "2", "--out", str(out)]) == 0
    ds = read_samples(out)
    np.testing.assert_array_equal(ds["mask"].values, mask.numpy().astype(np.int8))
    land = mask.numpy() < 0.5
    assert np.all(ds["sit"].values[:, land] == 0)  # land of the encoded set, not of the VAE's
    assert ds["sit"].attrs["units"] == "m" and ds["siu"].attrs["units"] == "m s-1"
    ds.close()


def test_replaced_vae_weights_are_refused_in_one_line(chain, tmp_path, capsys):
    own, _, vae, latents, ldm, config = chain
    saved = tmp_path / "saved-vae"
    shutil.copytree(vae, saved)
    try:  # the VAE retrained from scratch in its folder: same step, other weights
        shutil.rmtree(vae)
        retrain = tiny_autoencoder_config(own, vae, train={"max_steps": 2, "seed": 5})
        assert run_training(config_from_dict(retrain)) == 0
        out = tmp_path / "s.nc"
        assert main(["sample", "--run", str(ldm), "--num", "1", "--out", str(out)]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(errors) == 1, errors
        assert str(latents) in errors[0] and str(vae / "checkpoints") in errors[0] and "re-encode" in errors[0]
        with pytest.raises(UserError, match="encoded by other VAE weights"):
            run_training(config_from_dict({**config, "run": {"dir": str(tmp_path / "ldm2")}}))
    finally:
        shutil.rmtree(vae)
        shutil.move(saved, vae)


def test_a_replaced_fields_set_is_refused_in_one_line(chain, tmp_path, capsys):
    _, other, _, latents, ldm, config = chain
    saved = tmp_path / "saved-fields"
    shutil.move(other, saved)
    try:  # another set at the same path: same grid, variables and coast, other statistics
        _other_fields(other, seed=8)
        out = tmp_path / "s.nc"
        assert main(["sample", "--run", str(ldm), "--num", "1", "--out", str(out)]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(errors) == 1, errors
        assert str(other) in errors[0] and str(latents) in errors[0] and "normalisation mean differs" in errors[0]
        with pytest.raises(UserError, match="not the fields data set latent set"):
            run_training(config_from_dict({**config, "run": {"dir": str(tmp_path / "ldm2")}}))
    finally:
        shutil.rmtree(other)
        shutil.move(saved, other)
    assert load_inference_model(ldm).field_static.mask.sum() == read_static(other).mask.sum()  # restored: accepted
