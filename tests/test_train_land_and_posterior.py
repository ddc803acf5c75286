"""Runs and the land: old-layout checkpoints still load and sample, the latent denoiser gets the
ocean fraction of its grid, and latent diffusion trains on posterior samples or on means."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
import yaml
from helpers import hpc_seaice, tiny_autoencoder_config, tiny_diffusion_config, write_config
from helpers_runs import encoded_by_a_tiny_vae

from hpc_seaice.config import UNetConfig, VAEConfig, config_from_dict
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.diffusion.noise import mix_seed, per_sample_normal
from hpc_seaice.inference.loading import load_inference_model
from hpc_seaice.train.tasks import SALT_POSTERIOR, DiffusionTask
from hpc_seaice.train.trainer import run_training

OLD_UNET = {"mask_channel": False, "upsample": "transposed", "position": "none"}


def as_old_run(run_dir) -> None:
    """Rewrite a run's config.yaml as a run made before the layout keys existed wrote it."""
    path = run_dir / "config.yaml"
    data = yaml.safe_load(path.read_text())
    for section, cls in (("unet", UNetConfig), ("vae", VAEConfig)):
        for key in cls._legacy_layout:
            data[section].pop(key)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def latents(tiny_dataset, tmp_path_factory):
    """A tiny VAE with the mask channel (3 steps) and its latents."""
    vae, out, proc = encoded_by_a_tiny_vae(tiny_dataset, tmp_path_factory.mktemp("land"))
    return {"vae": vae, "latents": out, "data": tiny_dataset, "encode_stdout": proc.stdout}


def test_old_layout_checkpoints_load_and_sample(tiny_dataset, tmp_path):
    """Runs trained before the mask channel and the new up-sampling: their config.yaml lacks the
    layout keys, their checkpoints hold transposed convolutions and 5-channel input layers."""
    run = tmp_path / "old-data"
    config = tiny_diffusion_config(tiny_dataset, run, unet=OLD_UNET, train={"max_steps": 2, "checkpoint_every": 2})
    assert run_training(config_from_dict(config)) == 0
    as_old_run(run)
    loaded = load_inference_model(run)
    assert loaded.config.unet.upsample == "transposed" and not loaded.config.unet.mask_channel
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in loaded.model.modules())
    out = tmp_path / "old.nc"
    hpc_seaice("sample", "--run", str(run), "--num", "2", "--out", str(out), "--steps", "2")
    with xr.open_dataset(out) as ds:
        assert ds["sic"].shape == (2, 32, 32) and np.isfinite(ds["sic"].values).all()

    vae_run = tmp_path / "old-vae"
    config = tiny_autoencoder_config(tiny_dataset, vae_run, vae={"mask_channel": False}, train={"max_steps": 2})
    assert run_training(config_from_dict(config)) == 0
    as_old_run(vae_run)
    vae = load_inference_model(vae_run).model
    assert vae.encoder.conv_in.in_channels == 5
    x = torch.stack([ShardedDataset(tiny_dataset, split="test")[0]])
    assert torch.isfinite(vae.decode(vae.encode(x)[0])).all()


def test_a_new_run_does_not_load_an_old_checkpoint_silently(tiny_dataset, tmp_path):
    """Resuming an old run with a new-layout config fails in one line naming the checkpoint."""
    run = tmp_path / "run"
    config = tiny_diffusion_config(tiny_dataset, run, unet=OLD_UNET, train={"max_steps": 2, "checkpoint_every": 2})
    assert run_training(config_from_dict(config)) == 0
    from hpc_seaice.errors import UserError

    with pytest.raises(UserError, match="does not match the configured model"):
        run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, run, train={"max_steps": 4})))


def test_networks_get_the_mask_of_their_data(latents):
    vae = load_inference_model(latents["vae"]).model
    mask = read_static(latents["data"]).mask
    np.testing.assert_array_equal(vae.ocean_mask[0, 0].numpy(), mask)
    config = tiny_diffusion_config(latents["latents"], latents["vae"].parent / "ldm-unused")
    config["unet"]["in_channels"] = 4
    cfg = config_from_dict(config)
    manifest, static = read_manifest(latents["latents"]), read_static(latents["latents"])
    task = DiffusionTask(cfg, manifest, static, torch.device("cpu"))
    # The ocean fraction of each 8 x 8 block of the 32 x 32 field grid, computed independently.
    expected = F.avg_pool2d(torch.as_tensor(mask, dtype=torch.float32)[None, None], 8)
    torch.testing.assert_close(task.net.ocean_fraction, expected)
    assert ((expected > 0) & (expected < 1)).any()  # coastal cells: a block mean, not a copy of the mask


@pytest.mark.parametrize("posterior", ["sample", "mean"])
def test_latent_diffusion_trains_on_posterior_samples_or_means(latents, posterior):
    config = tiny_diffusion_config(latents["latents"], latents["vae"].parent / f"ldm-{posterior}")
    config["unet"]["in_channels"] = 4
    config["diffusion"] = {"latent_posterior": posterior}
    cfg = config_from_dict(config)
    manifest, static = read_manifest(latents["latents"]), read_static(latents["latents"])
    task = DiffusionTask(cfg, manifest, static, torch.device("cpu"))
    seen = []

    class Capture(torch.nn.Module):
        def forward(self, x, mask, gamma, eps):
            seen.append(x.clone())
            return x.sum() * 0, torch.zeros(len(x))

    train = ShardedDataset(latents["latents"], split="train")
    positions = torch.tensor([0, 1, len(train) + 2])  # the last one in the second epoch
    # The trainer's data order, written out: epoch e is permutation(seed, e) of the train split.
    index = [np.random.default_rng((cfg.train.seed, int(p) // len(train))).permutation(len(train))[int(p) % len(train)]
             for p in positions]  # fmt: skip
    means = torch.stack([train[int(i)] for i in index])
    # What the trainer's loader hands over: [mean, sigma] per sample when training on posterior samples.
    batch = ShardedDataset(latents["latents"], split="train", posterior=posterior == "sample")
    task.micro_loss(Capture(), torch.stack([batch[int(i)] for i in index]), positions, step=5, global_batch=4)
    task.micro_loss(Capture(), means, positions, step=-1, global_batch=4)  # validation
    torch.testing.assert_close(seen[1], means)  # validation scores the means
    if posterior == "mean":
        torch.testing.assert_close(seen[0], means)
        return
    logvar = np.stack([train.logvar(int(i)) for i in index])
    sigma = torch.as_tensor(np.exp(0.5 * logvar) / static.std[None, :, None, None], dtype=torch.float32)
    eps = per_sample_normal(positions, tuple(means.shape[1:]), cfg.train.seed, SALT_POSTERIOR, torch.device("cpu"))
    torch.testing.assert_close(seen[0], means + sigma * eps)
    assert (seen[0] - means).abs().max() > 0
    assert mix_seed(cfg.train.seed, SALT_POSTERIOR, 0) != mix_seed(cfg.train.seed, 1, 0)  # its own noise stream


def test_encode_reports_the_mean_posterior_variance(latents):
    line = next(ln for ln in latents["encode_stdout"].splitlines() if "posterior variance" in ln)
    train = ShardedDataset(latents["latents"], split="train", normalize=False)
    var = np.mean([np.exp(train.logvar(i).astype(np.float64)) for i in range(len(train))], axis=(0, 2, 3))
    reported = yaml.safe_load(line.split("over train: ")[1].split(";")[0])
    np.testing.assert_allclose(reported, np.round(var, 4), atol=2e-4)
    ratio = var / read_static(latents["latents"]).std.astype(np.float64) ** 2
    assert f"mean {ratio.mean():.3g}" in line


def test_an_old_layout_run_resumes_from_its_own_config(tiny_dataset, tmp_path):
    """``hpc-seaice train --config RUN/config.yaml`` of a run made before the layout keys: the
    legacy layout is read from the file, the checkpoint loads, and training goes on."""
    from hpc_seaice.config import load_config
    from hpc_seaice.runtime.checkpoint import latest_checkpoint

    run = tmp_path / "old"
    config = tiny_diffusion_config(tiny_dataset, run, unet=OLD_UNET, train={"max_steps": 2, "checkpoint_every": 2})
    assert run_training(config_from_dict(config)) == 0
    as_old_run(run)
    assert "mask_channel" not in (run / "config.yaml").read_text()
    assert run_training(load_config(run / "config.yaml", ["train.max_steps=4"])) == 0
    assert latest_checkpoint(run).name.endswith("4")
    rewritten = yaml.safe_load((run / "config.yaml").read_text())["unet"]
    assert {k: rewritten[k] for k in OLD_UNET} == OLD_UNET  # written out in full: no guess next time


def test_a_nan_log_variance_stops_training_in_one_line_with_loader_workers(latents, tmp_path):
    """logvar is not checked at start (only the means are): a NaN in it surfaces in a loader worker,
    and the run must exit 2 naming the shard, not hang at exit waiting for its workers."""
    data = tmp_path / "latents"
    shutil.copytree(latents["latents"], data)
    shard = sorted(data.glob("train-*.h5"))[0]
    with h5py.File(shard, "r+") as f:
        f["logvar"][7, 1, 2, 2] = np.nan
    config = tiny_diffusion_config(data, tmp_path / "run", data={"num_workers": 2})
    config["unet"]["in_channels"] = 4
    proc = hpc_seaice("train", str(write_config(tmp_path / "c.yaml", config)), check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"hpc-seaice train: error: {shard}: sample 7 at 2010-05-27T00:00:00: NaN or infinite values in the "
        "posterior log-variance (logvar)"
    ]
