"""encode -> latent diffusion -> sample, on 1 and 2 ranks: complete, non-overlapping, identical outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import xarray as xr
from helpers import hpc_seaice, tiny_autoencoder_config, tiny_diffusion_config, torchrun
from helpers_runs import encoded_by_a_tiny_vae

from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.train.trainer import run_training


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """A tiny VAE, its latents (encoded on 1 rank) and a latent diffusion run on them."""
    root = tmp_path_factory.mktemp("pipeline")
    vae, latents, _ = encoded_by_a_tiny_vae(tiny_dataset, root, "latents-1")
    config = tiny_diffusion_config(latents, root / "ldm", train={"max_steps": 3})
    config["unet"]["in_channels"] = read_manifest(latents).num_channels
    assert run_training(config_from_dict(config)) == 0
    return {"root": root, "vae": vae, "latents": latents, "ldm": root / "ldm", "data": tiny_dataset}


def test_encode_covers_every_sample_once_and_two_ranks_agree(trained, tmp_path):
    fields = read_manifest(trained["data"])
    one = read_manifest(trained["latents"])
    assert one.kind == "latent" and one.num_samples == fields.num_samples
    assert one.source["autoencoder_run"].endswith("vae")
    two_dir = tmp_path / "latents-2"
    torchrun(2, "encode", "--autoencoder", str(trained["vae"]), "--data", str(trained["data"]), "--out", str(two_dir))
    two = read_manifest(two_dir)
    assert {s.file.split("-r")[1][:3] for s in two.shards} == {"000", "001"}  # both ranks wrote shards
    assert two.num_samples == fields.num_samples
    a = ShardedDataset(trained["latents"], split=None, normalize=False)
    b = ShardedDataset(two_dir, split=None, normalize=False)
    assert np.all(np.diff(b.times.astype(np.int64)) > 0)  # time-ordered, no duplicates
    np.testing.assert_array_equal(a.times, b.times)
    for i in range(len(a)):
        np.testing.assert_allclose(a.raw(i), b.raw(i), rtol=1e-4, atol=1e-5)
    # The latent standardisation statistics are the latent set's own, over its train split.
    stats = read_static(two_dir)
    train = ShardedDataset(two_dir, split="train", normalize=False)
    values = np.stack([train.raw(i) for i in range(len(train))]).astype(np.float64)
    np.testing.assert_allclose(stats.mean, values.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats.std, values.std(axis=(0, 2, 3)), rtol=1e-3, atol=1e-5)


def test_encode_skips_an_empty_split(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["splits"]["future"] = ["2199-01-01", "2199-12-31"]  # a split with no sample in it
    (data / "manifest.json").write_text(json.dumps(manifest))
    hpc_seaice("encode", "--autoencoder", str(trained["vae"]), "--data", str(data), "--out", str(tmp_path / "z"))
    latents = read_manifest(tmp_path / "z")
    assert latents.num_samples == read_manifest(trained["data"]).num_samples
    assert not any(s.file.startswith("future-") for s in latents.shards)


def test_encoding_other_data_with_the_same_vae_changes_no_earlier_run(trained, tmp_path):
    """encode only reads the VAE run: an LDM's samples stay the same after other data are encoded."""
    from hpc_seaice.data.synth.generate import generate

    def sample(name: str) -> np.ndarray:
        out = tmp_path / name
        hpc_seaice("sample", "--run", str(trained["ldm"]), "--num", "2", "--out", str(out), "--steps", "3")
        with xr.open_dataset(out, engine="h5netcdf") as ds:
            return ds["sit_raw"].values

    vae_files = {p: p.read_bytes() for p in sorted(trained["vae"].rglob("*.pt"))}
    before = sample("before.nc")
    other = tmp_path / "other-data"
    generate(other, grid=32, freq="20D", seed=7, shard_size=64, progress=False)
    other_latents = tmp_path / "other-latents"
    hpc_seaice("encode", "--autoencoder", str(trained["vae"]), "--data", str(other), "--out", str(other_latents))
    assert not np.allclose(read_static(other_latents).mean, read_static(trained["latents"]).mean)
    assert {p: p.read_bytes() for p in sorted(trained["vae"].rglob("*.pt"))} == vae_files
    np.testing.assert_array_equal(sample("after.nc"), before)


def test_sample_is_the_same_on_one_or_two_ranks_and_any_batch_size(trained, tmp_path):
    one = tmp_path / "one.nc"
    hpc_seaice(
        "sample", "--run", str(trained["ldm"]), "--num", "5", "--out", str(one), "--steps", "4", "--batch-size", "2"
    )
    two = tmp_path / "two.nc"
    torchrun(
        2,
        "sample",
        "--run-dir",
        str(trained["ldm"]),
        "--num-samples",
        "5",
        "--out",
        str(two),
        "--steps",
        "4",
        "--batch-size",
        "3",
    )
    with xr.open_dataset(one, engine="h5netcdf") as a, xr.open_dataset(two, engine="h5netcdf") as b:
        assert a.sizes["sample"] == b.sizes["sample"] == 5
        assert a.attrs["steps"] == 4 and a.attrs["space"] == "latent" and a.attrs["network_evaluations_per_sample"] == 7
        for name in ("sit", "sic", "damage", "siu", "siv"):
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-4, atol=1e-5)
        mask = a["mask"].values > 0
        assert float(np.abs(a["sit"].values[:, ~mask]).max()) == 0.0  # land is 0
        assert float(a["sic"].values.min()) >= 0.0 and float(a["sic"].values.max()) <= 1.0  # clipped
        assert not np.array_equal(a["sit"].values[0], a["sit"].values[1])  # different noise per sample


def test_sample_refuses_an_autoencoder_run(trained, tmp_path):
    proc = hpc_seaice(
        "sample", "--run", str(trained["vae"]), "--num", "2", "--out", str(tmp_path / "x.nc"), check=False
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "sampling needs a diffusion run" in lines[0]


def test_data_space_sampling_clips_and_records_raw_values(tiny_dataset, tmp_path):
    run_dir = tmp_path / "data-space"
    assert run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 2}))) == 0
    out = tmp_path / "s.nc"
    hpc_seaice("sample", "--run", str(run_dir), "--num", "2", "--out", str(out), "--steps", "3")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.attrs["space"] == "fields"
        raw, clipped = torch.as_tensor(ds["sic_raw"].values), torch.as_tensor(ds["sic"].values)
        np.testing.assert_allclose(clipped.numpy(), raw.clamp(0, 1).numpy(), atol=1e-6)


def _one_line(argv: list[str], capsys, needle: str) -> None:
    from hpc_seaice.cli import main

    capsys.readouterr()
    code = main(argv)
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines


def test_sample_and_evaluate_output_arguments_are_one_line(trained, tmp_path, capsys):
    run = ["sample", "--run", str(trained["ldm"]), "--steps", "2"]
    (tmp_path / "a-file").write_text("x")
    existing = tmp_path / "existing.nc"
    existing.write_text("earlier samples")
    _one_line([*run, "--num", "1", "--out", str(tmp_path)], capsys, "expected a .nc file")
    (tmp_path / "folder.nc").mkdir()
    _one_line([*run, "--num", "1", "--out", str(tmp_path / "folder.nc")], capsys, "is a folder; give a file name")
    _one_line(
        [*run, "--num", "1", "--out", str(tmp_path / "a-file" / "x.nc")], capsys, "a-file is a file, not a folder"
    )
    _one_line([*run, "--num", "1", "--out", str(existing)], capsys, "exists; pass --overwrite to replace it")
    assert existing.read_text() == "earlier samples"
    _one_line([*run, "--num", "1000000000", "--out", str(tmp_path / "big.nc")], capsys, "--num 1000000000")
    assert not (tmp_path / "big.nc.parts").exists()
    hpc_seaice(*run, "--num", "1", "--out", str(existing), "--overwrite")
    with xr.open_dataset(existing, engine="h5netcdf") as ds:
        assert ds.sizes["sample"] == 1

    evaluate = ["evaluate", "--samples", str(existing), "--data", str(trained["data"]), "--max-states", "2"]
    _one_line([*evaluate, "--out", str(tmp_path / "a-file")], capsys, "is a file; give a folder")
    _one_line([*evaluate, "--out", str(tmp_path / "a-file" / "report")], capsys, "is a file, not a folder")
    encode = ["encode", "--autoencoder", str(trained["vae"]), "--data", str(trained["data"])]
    _one_line([*encode, "--out", str(tmp_path / "a-file" / "latents")], capsys, "is a file, not a folder")


def test_encode_pins_the_vae_checkpoint_against_pruning(tiny_dataset, tmp_path):
    """Continuing to train a VAE keeps the checkpoint a latent data set was encoded with."""
    vae = tmp_path / "vae"
    config = tiny_autoencoder_config(tiny_dataset, vae, run={"keep_checkpoints": 1}, train={"max_steps": 3})
    assert run_training(config_from_dict(config)) == 0
    latents = tmp_path / "latents"
    hpc_seaice("encode", "--autoencoder", str(vae), "--data", str(tiny_dataset), "--out", str(latents))
    assert read_manifest(latents).source["autoencoder_step"] == 3
    config["train"]["max_steps"] = 9
    assert run_training(config_from_dict(config)) == 0
    kept = sorted(p.name for p in (vae / "checkpoints").glob("step_*"))
    assert kept == ["step_00000003", "step_00000009"]  # keep_checkpoints=1, plus the pinned one
    # Once the latent set is gone, its pin no longer holds the checkpoint.
    shutil.rmtree(latents)
    config["train"]["max_steps"] = 12
    assert run_training(config_from_dict(config)) == 0
    assert sorted(p.name for p in (vae / "checkpoints").glob("step_*")) == ["step_00000012"]
