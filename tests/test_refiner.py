"""The residual refiner (stage ``refiner``): its training pairs, its sampler, resume and ranks, bad input.

A tiny chain (VAE -> latents -> latent run) on the 32 x 32 set, then a refiner of that latent run.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import xarray as xr
from helpers import (
    assert_close_trajectories,
    hpc_seaice,
    logged_steps,
    losses,
    tiny_autoencoder_config,
    tiny_diffusion_config,
    torchrun,
    write_config,
)
from helpers_runs import latent_run_chain

import hpc_seaice as hs
from hpc_seaice.config import UNetConfig, config_from_dict, with_absolute_paths
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.errors import UserError
from hpc_seaice.inference.generate import decoder_for
from hpc_seaice.inference.loading import load_inference_model
from hpc_seaice.inference.refine import FieldScaler, Refinement, reconstruct
from hpc_seaice.models.unet import UNet
from hpc_seaice.runtime.stopping import STOP_FILE
from hpc_seaice.train.tasks import build_task
from hpc_seaice.train.trainer import run_training


def refiner_config(data, run_dir, latent_run, **train) -> dict:
    config = tiny_diffusion_config(data, run_dir, train={"max_steps": 4, "checkpoint_every": 2, **train})
    config["stage"] = "refiner"
    config["unet"]["cond_channels"] = 5
    config["refine"] = {"latent_run": str(latent_run), "scale_states": 8}
    config["diffusion"] = {"sampler_steps": 3, "sampler_gamma_min": -4.0}
    return config


@pytest.fixture(scope="module")
def chain(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("refiner")
    vae, latents, ldm, _ = latent_run_chain(tiny_dataset, tiny_dataset, root)
    refiner = root / "refiner"
    assert run_training(config_from_dict(refiner_config(tiny_dataset, refiner, ldm))) == 0
    return {"root": root, "vae": vae, "ldm": ldm, "refiner": refiner, "data": tiny_dataset}


def test_training_pairs_add_up_to_the_state_and_the_scale_is_the_residual_std(chain):
    """decoded + scale * residual == x over the ocean; the scale is the residual's std measured independently."""
    cfg = config_from_dict(refiner_config(chain["data"], chain["root"] / "unused", chain["ldm"]))
    task = build_task(cfg, read_manifest(chain["data"]), read_static(chain["data"]), torch.device("cpu"))
    states = ShardedDataset(chain["data"], split="train")
    x = torch.stack([states[i] for i in range(3)])
    residual, decoded = task.condition(x, torch.arange(3))
    ocean = task.fields.mask > 0.5
    rebuilt = decoded + residual * task.net.scale()
    torch.testing.assert_close(rebuilt[:, :, ocean], x[:, :, ocean], atol=1e-5, rtol=1e-5)
    assert float(residual[:, :, ~ocean].abs().max()) == 0.0
    # the condition is the VAE's decoded field: within the bounds once back in physical units
    phys = task.fields.to_phys(decoded)
    lower = torch.as_tensor(read_manifest(chain["data"]).lower).view(1, -1, 1, 1)
    assert bool((phys[:, :, ocean] >= lower.expand_as(phys)[:, :, ocean] - 1e-5).all())
    # the scale, recomputed with numpy from reconstructions at the posterior mean of every chosen state
    chosen = np.unique(np.linspace(0, len(states) - 1, 8).round().astype(int))
    batch = torch.stack([states[int(i)] for i in chosen])
    fields = FieldScaler(read_static(chain["data"]), torch.device("cpu"))
    recon = fields.to_norm(reconstruct(task.vae, fields.to_phys(batch), fields.mask)).numpy()
    diff = (batch.numpy() - recon)[:, :, ocean.numpy()]
    expected = np.sqrt((diff.astype(np.float64) ** 2).mean(axis=(0, 2)))
    np.testing.assert_allclose(task.net.residual_scale.numpy(), expected, rtol=1e-4)
    loaded = load_inference_model(chain["refiner"])  # the trained run kept the scale in its weights
    np.testing.assert_allclose(loaded.model.residual_scale.numpy(), expected, rtol=1e-4)


def test_the_condition_at_training_is_what_sampling_decodes(chain):
    """Training pairs decode z with :func:`reconstruct`; sampling decodes the latent run's standardised
    sample with its :class:`LatentDecoder`: for the same z both must give the same field."""
    ldm = load_inference_model(chain["ldm"])
    states = ShardedDataset(chain["data"], split="train")
    fields = FieldScaler(read_static(chain["data"]), torch.device("cpu"))
    phys = fields.to_phys(torch.stack([states[i] for i in range(3)]))
    mean, logvar = ldm.vae.encode(ldm.vae.normalize(phys) * fields.mask)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    trained = reconstruct(ldm.vae, phys, fields.mask, eps)
    z = mean + torch.exp(0.5 * logvar) * eps
    latent_mean, latent_std = (
        torch.as_tensor(v).view(1, -1, 1, 1) for v in (ldm.data_static.mean, ldm.data_static.std)
    )
    decoder = decoder_for(ldm.data_manifest, ldm.data_static, ldm.vae, ldm.field_static.mask, torch.device("cpu"))
    sampled, _ = decoder((z - latent_mean) / latent_std)
    torch.testing.assert_close(trained, sampled, atol=1e-5, rtol=1e-5)
    assert float(trained.abs().max()) > 0.1  # a field, not zeros


def test_an_untrained_refiner_draws_the_exact_gaussian_residual(chain):
    """A zero v-prediction is the exact denoiser of N(0, 1) data: the residual comes out N(0, scale^2).

    With the refiner presets' sampler (EDM spacing, rho 3, sigma_max e^1.5) at 12 steps; at 3-6
    steps Heun inflates the std by 8-66 % on this exact case, at 8 by 3.3 %, at 12 by 0.5 % (docs/refiner.md).
    """
    loaded = load_inference_model(chain["refiner"])
    refiner = loaded.model
    torch.nn.init.zeros_(refiner.net.conv_out.weight)
    torch.nn.init.zeros_(refiner.net.conv_out.bias)
    refiner.set_residual_scale([0.5, 0.25, 0.1, 0.2, 0.3])
    static = loaded.data_static
    manifest = loaded.data_manifest
    update = {"sampler_spacing": "edm", "sampler_rho": 3.0, "sampler_gamma_min": -3.0}
    cfg = loaded.config.diffusion.model_copy(update=update)
    refine = Refinement(refiner, static, manifest.lower, manifest.upper, cfg, 12, torch.device("cpu"))
    decoded = ShardedDataset(chain["data"], split="test", normalize=False)[0][None].repeat(64, 1, 1, 1)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((64, 5, *manifest.grid), generator=generator)
    _, raw = refine(decoded, noise)
    fields = FieldScaler(static, torch.device("cpu"))
    ocean = fields.mask > 0.5
    residual = (fields.to_norm(raw) - fields.to_norm(decoded))[:, :, ocean]
    std = residual.double().std(dim=(0, 2)).numpy()
    np.testing.assert_allclose(std, [0.5, 0.25, 0.1, 0.2, 0.3], rtol=0.03)
    assert abs(float(residual.double().mean())) < 0.01


def test_refiner_run_samples_on_top_of_its_latent_run_through_cli_and_api(chain, tmp_path):
    out = tmp_path / "refined.nc"
    proc = hpc_seaice(
        "sample", "--run-dir", str(chain["refiner"]), "--num-samples", "3", "--out", str(out), "--seed", "5"
    )
    assert f"latent space + refiner of {chain['ldm']} step 1" in proc.stdout
    assert "+ refiner Heun 3 steps (5 calls)" in proc.stdout
    run = hs.open_run(chain["refiner"], device="cpu")
    assert f"latent space + refiner of {str(chain['ldm'])!r}" in repr(run)
    api = run.sample(3, seed=5, progress=False)
    plain = hs.open_run(chain["ldm"], device="cpu").sample(3, seed=5, progress=False)
    with xr.open_dataset(out) as written:
        for name in ("sit", "sic", "damage"):
            np.testing.assert_allclose(written[name].values, api[name].values, atol=1e-5)
        assert written.attrs["space"] == "latent + data-space refiner"
        assert written.attrs["steps"] == plain.attrs["steps"]  # the latent run's own default
        assert written.attrs["refiner_steps"] == 3
        assert written.attrs["latent_run"] == str(chain["ldm"].resolve())
    # refined samples are the latent run's samples plus a residual: different, on the same coast
    assert not np.allclose(api["sit"].values, plain["sit"].values)
    np.testing.assert_array_equal(np.isnan(api["sit"].values), np.isnan(plain["sit"].values))


def test_refined_samples_do_not_depend_on_the_number_of_ranks(chain, tmp_path):
    """Two ranks, batches of 2 (rank 0 gets samples 0-1, rank 1 sample 2), against one process in one batch."""
    out = tmp_path / "two.nc"
    args = ("--run-dir", str(chain["refiner"]), "--num-samples", "3", "--batch-size", "2", "--seed", "5")
    torchrun(2, "sample", *args, "--out", str(out))
    api = hs.open_run(chain["refiner"], device="cpu").sample(3, seed=5, batch_size=3, progress=False)
    with xr.open_dataset(out) as written:
        for name in ("sit", "sic", "damage", "siu", "siv"):
            np.testing.assert_allclose(written[name].values, api[name].values, atol=1e-5)
            np.testing.assert_allclose(written[f"{name}_raw"].values, api[f"{name}_raw"].values, atol=1e-4)


def test_refiner_resumes_exactly_and_two_ranks_follow_one(chain, tmp_path):
    reference = tmp_path / "reference"
    config = refiner_config(chain["data"], reference, chain["ldm"], max_steps=4, checkpoint_every=100)
    assert run_training(config_from_dict({**config, "train": {**config["train"], "grad_accum": 2}})) == 0
    run_dir = tmp_path / "interrupted"
    config["run"]["dir"] = str(run_dir)
    path = write_config(tmp_path / "c.yaml", config)
    run_dir.mkdir()
    (run_dir / STOP_FILE).touch()  # both ranks stop after the first step and checkpoint it
    proc = torchrun(2, "train", str(path), check=False)
    assert proc.returncode != 0 and "stop file" in proc.stdout, proc.stderr[-3000:]
    torchrun(2, "train", str(path))
    assert logged_steps(run_dir) == [1, 2, 3, 4]
    assert_close_trajectories(losses(run_dir), losses(reference))


def test_bad_refiner_configs_are_one_line(chain, tmp_path):
    def build(config):
        cfg = config_from_dict(config)
        return build_task(cfg, read_manifest(chain["data"]), read_static(chain["data"]), torch.device("cpu"))

    empty = refiner_config(chain["data"], tmp_path / "a", "")
    with pytest.raises(UserError, match="refine.latent_run' is empty"):
        build(empty)
    data_space = tmp_path / "data-space"
    assert run_training(config_from_dict(tiny_diffusion_config(chain["data"], data_space, train={"max_steps": 1}))) == 0
    with pytest.raises(UserError, match="data-space run; a refiner needs a latent run"):
        build(refiner_config(chain["data"], tmp_path / "b", data_space))
    wrong = refiner_config(chain["data"], tmp_path / "c", chain["ldm"])
    wrong["unet"]["cond_channels"] = 3
    with pytest.raises(UserError, match="unet.cond_channels' is 3"):
        build(wrong)
    plain = tiny_diffusion_config(chain["data"], tmp_path / "d")
    plain["unet"]["cond_channels"] = 5
    with pytest.raises(UserError, match="only stage 'refiner' has a condition"):
        build(plain)


def test_unet_condition_is_required_exactly_when_configured():
    net = UNet(UNetConfig(preset="tiny-unet", cond_channels=2))
    x, gamma = torch.zeros(1, 5, 16, 16), torch.zeros(1)
    with pytest.raises(ValueError, match="needs cond of shape"):
        net(x, gamma)
    torch.nn.init.normal_(net.conv_out.weight)
    a = net(x, gamma, cond=torch.zeros(1, 2, 16, 16))
    b = net(x, gamma, cond=torch.ones(1, 2, 16, 16))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="cond_channels=0"):
        UNet(UNetConfig(preset="tiny-unet"))(x, gamma, cond=torch.zeros(1, 2, 16, 16))


def test_spectral_decoder_noise_has_the_residuals_spectrum_and_variance(chain):
    """Checked with numpy against the VAE's residuals on the same training states."""
    from hpc_seaice.inference.decoder_noise import SpectralDecoderNoise

    loaded = load_inference_model(chain["ldm"])
    manifest = read_manifest(chain["data"])
    noise = SpectralDecoderNoise.fit(loaded.vae, str(chain["data"]), manifest.lower, manifest.upper, states=16)
    states = ShardedDataset(chain["data"], split="train")
    chosen = np.unique(np.linspace(0, len(states) - 1, 16).round().astype(int))
    batch = torch.stack([states[int(i)] for i in chosen])
    fields = FieldScaler(read_static(chain["data"]), torch.device("cpu"))
    residual = (batch - fields.to_norm(reconstruct(loaded.vae, fields.to_phys(batch), fields.mask))).numpy()
    ocean = fields.mask.numpy() > 0.5
    # the fitted spectrum: the residuals' mean periodogram, per ocean share (the noise is masked afterwards)
    periodogram = (np.abs(np.fft.fft2(residual.astype(np.float64))) ** 2).mean(axis=0) / ocean.mean()
    fitted = noise.amplitude.double().numpy() ** 2 * ocean.size
    np.testing.assert_allclose(fitted, periodogram, rtol=1e-4, atol=1e-9 * periodogram.max())
    white = torch.randn((400, *batch.shape[1:]), generator=torch.Generator().manual_seed(1))
    stationary = noise.stationary(white).double().numpy()

    def rings(power):  # [C, H, W] -> summed by integer wavenumber ring
        k = np.hypot(*np.meshgrid(np.fft.fftfreq(power.shape[-2]), np.fft.fftfreq(power.shape[-1]), indexing="ij"))
        ring = np.minimum((k * power.shape[-1]).round().astype(int), power.shape[-1] // 2)
        return np.stack([np.bincount(ring.ravel(), p.ravel()) for p in power])

    drawn = rings((np.abs(np.fft.fft2(stationary)) ** 2).mean(axis=0))
    error = np.abs(np.log10(drawn / rings(periodogram)))[:, 1:]  # ring 0 is one coefficient: too noisy
    assert error.max() < 0.06, error.round(3)
    # masked, its ocean cells have the residuals' variance per variable
    masked = noise.noise(white).numpy()
    np.testing.assert_allclose(masked[:, :, ocean].std(axis=(0, 2)), residual[:, :, ocean].std(axis=(0, 2)), rtol=0.1)


def test_spectral_decoder_noise_through_cli_and_api(chain, tmp_path):
    out = tmp_path / "noisy.nc"
    hpc_seaice(
        "sample", "--run-dir", str(chain["ldm"]), "--num-samples", "2", "--out", str(out), "--decoder-noise", "spectral"
    )
    api = hs.open_run(chain["ldm"], device="cpu").sample(2, decoder_noise="spectral", progress=False)
    plain = hs.open_run(chain["ldm"], device="cpu").sample(2, progress=False)
    with xr.open_dataset(out) as written:
        np.testing.assert_allclose(written["sit"].values, api["sit"].values, atol=1e-5)
        assert written.attrs["decoder_noise"].startswith("spectral")
    assert not np.allclose(api["sit"].values, plain["sit"].values)
    bad = hpc_seaice(
        "sample",
        "--run-dir",
        str(chain["refiner"]),
        "--num-samples",
        "1",
        "--out",
        str(tmp_path / "x.nc"),
        "--decoder-noise",
        "spectral",
        check=False,
    )
    assert bad.returncode == 2 and "it applies to latent runs" in bad.stderr
    with pytest.raises(ValueError, match="decoder_noise must be one of"):
        hs.open_run(chain["ldm"], device="cpu").sample(1, decoder_noise="white")


def _one_line_error(proc, *needles: str) -> str:
    lines = [line for line in proc.stderr.strip().splitlines() if "warning" not in line]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_refiner_follows_its_latent_run_and_refuses_another_vae(tiny_dataset, tmp_path):
    """Its own chain, changed in place as users do: the latent run moved (one line saying where to set
    the new place, which then works), the latent run switched to posterior means (resume refused), the
    VAE retrained in its folder and the latents re-encoded (resume and sampling refused: the learned
    residual belongs to the old decoder)."""
    vae, latents, ldm, _ = latent_run_chain(tiny_dataset, tiny_dataset, tmp_path)
    refiner = tmp_path / "refiner"
    config = refiner_config(tiny_dataset, refiner, ldm, max_steps=1, checkpoint_every=1)
    assert run_training(config_from_dict(config)) == 0
    out = tmp_path / "s.nc"
    sample = ("sample", "--run-dir", str(refiner), "--num-samples", "1", "--steps", "2", "--out", str(out))

    moved = tmp_path / "ldm-moved"
    ldm.rename(moved)
    _one_line_error(
        hpc_seaice(*sample, check=False), f"the latent run it refines, {ldm}, is gone", str(refiner / "config.yaml")
    )
    refiner_yaml = refiner / "config.yaml"
    text = refiner_yaml.read_text()
    refiner_yaml.write_text(text.replace(f"latent_run: {ldm}", f"latent_run: {moved}"))
    hpc_seaice(*sample)  # what the message says to do works
    refiner_yaml.write_text(text)
    moved.rename(ldm)

    more = {**config, "train": {**config["train"], "max_steps": 2}}
    ldm_yaml = ldm / "config.yaml"
    text = ldm_yaml.read_text()
    assert "latent_posterior: sample" in text
    ldm_yaml.write_text(text.replace("latent_posterior: sample", "latent_posterior: mean"))
    with pytest.raises(UserError, match="decoded from posterior samples, but the latent run .* posterior means"):
        run_training(config_from_dict(more))
    ldm_yaml.write_text(text)

    shutil.rmtree(vae)
    retrained = tiny_autoencoder_config(tiny_dataset, vae, train={"max_steps": 2, "seed": 7})
    assert run_training(config_from_dict(retrained)) == 0
    hpc_seaice("encode", "--autoencoder", str(vae), "--data", str(tiny_dataset), "--out", str(latents), "--overwrite")
    with pytest.raises(UserError, match="trained on the decoded fields of VAE weights sha256 .* now decodes with"):
        run_training(config_from_dict(more))
    _one_line_error(hpc_seaice(*sample, "--overwrite", check=False), "now decodes with", "train the refiner again")


def test_refine_latent_run_is_made_absolute_like_the_other_paths(tmp_path, monkeypatch):
    """A run folder's config.yaml must work from any directory: a relative latent run is resolved when training."""
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict(refiner_config(tmp_path / "data", "run", "runs/ldm"))
    assert with_absolute_paths(cfg).refine.latent_run == str(tmp_path / "runs" / "ldm")
