"""What differs between the training stages, behind one interface the trainer drives.

``autoencoder`` trains the VAE on fields; ``diffusion`` trains the U-Net denoiser on whatever
the data set holds: fields (data-space diffusion) or cached latents (latent diffusion). The two
diffusion spaces are the same task; only the data set and the network size differ.

Randomness that enters the loss (diffusion noise, log-SNR, VAE reparameterisation noise) is
drawn per sample from its *global stream position* (the sample's place in the run's data
order, :mod:`hpc_seaice.diffusion.noise`), never from a rank's RNG stream. So a global batch
gets the same noise on 1 or N ranks, and a resumed run the same noise as an uninterrupted one.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from hpc_seaice.config import ExperimentConfig
from hpc_seaice.data.blocks import evenly_spaced
from hpc_seaice.data.format.manifest import Manifest
from hpc_seaice.data.format.provenance import LatentProvenance
from hpc_seaice.data.format.static import Static
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.diffusion.loss import diffusion_loss
from hpc_seaice.diffusion.noise import mix_seed, per_sample_normal
from hpc_seaice.diffusion.schedule import Schedule, build_schedule, stratified_uniform
from hpc_seaice.inference.loading import check_vae_weights, load_vae
from hpc_seaice.inference.refine import (
    FieldScaler,
    base_identity,
    check_base_identity,
    check_same_grid,
    latent_base,
    reconstruct,
    residual_scale,
)
from hpc_seaice.models.build import build_stage_model
from hpc_seaice.train.frozen_encoder import freeze_encoder

# Salts keep the streams of different uses of randomness apart.
SALT_TRAIN_NOISE = 1
SALT_TRAIN_GAMMA = 2
SALT_VAL = 3
SALT_POSTERIOR = 4


# What latent diffusion needs beyond the cached latent means: the coast and the posterior spread.
#
# - The latent denoiser cannot see land in the latents themselves; it gets the ocean fraction of
#   each latent cell (the block mean of the fields' land-sea mask) as an input channel. The latent
#   data set records the fields data set it was encoded from, whose ``static.h5`` has the mask.
# - The VAE's posterior is q(z | x) = N(mu, sigma^2); ``encode`` stores mu as the latent and
#   log sigma^2 beside it. Training on means learns the distribution of mu; training on posterior
#   samples z = mu + sigma * eps learns the distribution the decoder was trained to decode (as in
#   Rombach et al. 2022). ``diffusion.latent_posterior`` chooses; logvar arrives with the batch
#   (the data set reads it beside the mean, in the loader's workers) and sigma is computed on the
#   training device; the noise eps is seeded from the
#   sample's global stream position like every other training noise, so 1 and N ranks and a
#   resumed run see the same z.
def trains_on_posterior(cfg: ExperimentConfig, kind: str) -> bool:
    """Whether a run trains on posterior samples z = mu + sigma * eps of a ``kind`` data set.

    Then its training batches are read with ``ShardedDataset(posterior=True)``: [2C, h, w] per
    sample, the standardised mean and the stored log-variance, both from the same batch buffers.
    """
    return cfg.stage == "diffusion" and kind == "latent" and cfg.diffusion.latent_posterior == "sample"


def latent_provenance(cfg: ExperimentConfig, manifest: Any) -> LatentProvenance | None:
    """A latent set's provenance, checked before training: the fields set and VAE weights it
    records must be the ones it was encoded from (one line naming both otherwise); a set that
    records neither (made by hand) passes, and then only ``unet.mask_channel`` needs its fields."""
    if manifest.kind != "latent":
        return None
    provenance = LatentProvenance.of(cfg.data.path, manifest)
    if provenance.fields_dataset is not None:
        provenance.check_fields()
    if provenance.autoencoder_run is not None:
        check_vae_weights(provenance)
    return provenance


class VAELoss(nn.Module):
    """Puts the VAE's loss in ``forward`` so DDP/DeepSpeed see the whole training computation."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.net = vae

    def forward(self, x: torch.Tensor, mask: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net.loss(x, mask, eps)
        return out["loss"], out["nll"].detach(), out["kl"].detach()


class DiffusionLoss(nn.Module):
    def __init__(self, net: nn.Module, schedule: Schedule) -> None:
        super().__init__()
        self.net = net
        self.schedule = schedule

    def forward(self, x, mask, gamma, eps, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net if cond is None else partial(self.net, cond=cond)  # a refiner's decoded field
        return diffusion_loss(net, x, mask, gamma, eps, self.schedule)


class Task:
    """The stage-specific part of training: network, loss, schedule state, validation views."""

    name = "base"
    loss_module: nn.Module

    def make_loss_module(self, net: nn.Module) -> nn.Module:
        """The training computation (loss in ``forward``) around ``net``."""
        raise NotImplementedError

    def __init__(self, cfg: ExperimentConfig, manifest: Manifest, static: Static, device: torch.device) -> None:
        self.cfg = cfg
        self.manifest = manifest
        self.static = static
        self.device = device
        self.provenance = latent_provenance(cfg, manifest)  # latent sets: the VAE and fields, resolved once
        self.net = build_stage_model(cfg, manifest, static, self.provenance)
        self.mask = torch.as_tensor(static.mask, dtype=torch.float32, device=device)

    def micro_loss(
        self, module: nn.Module, x: torch.Tensor, positions: torch.Tensor, step: int, global_batch: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean loss of one micro-batch and per-sample statistics to gather across ranks.

        ``positions`` are the samples' global stream positions; a negative ``step`` is a
        validation pass, where they are indices into the validation split.
        """
        raise NotImplementedError

    def after_step(self, gathered: dict[str, torch.Tensor]) -> dict[str, float]:
        """Update task state from the statistics of the whole global batch; scalars to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class AutoencoderTask(Task):
    name = "autoencoder"

    def __init__(self, cfg, manifest, static, device) -> None:
        super().__init__(cfg, manifest, static, device)
        if cfg.vae.frozen_encoder:  # train only the decoder: the source run's latents stay valid
            freeze_encoder(self.net, cfg.vae.frozen_encoder, cfg.run.dir)
        self.loss_module = self.make_loss_module(self.net)
        self.latent_shape = tuple(self.net.latent_shape(*manifest.grid))

    def make_loss_module(self, net):
        return VAELoss(net)

    def micro_loss(self, module, x, positions, step, global_batch):
        eps = per_sample_normal(positions, self.latent_shape, self.cfg.train.seed, SALT_TRAIN_NOISE, self.device)
        loss, nll, kl = module(x, self.mask, eps)
        return loss, {"nll": nll.reshape(1), "kl": kl.reshape(1)}

    def after_step(self, gathered):
        return {"nll": float(gathered["nll"].mean()), "kl": float(gathered["kl"].mean())}


class DiffusionTask(Task):
    name = "diffusion"
    gamma_bins = 8  # loss per log-SNR bin, logged to TensorBoard

    def __init__(self, cfg, manifest, static, device) -> None:
        super().__init__(cfg, manifest, static, device)
        self.schedule = build_schedule(cfg.diffusion)
        self.loss_module = self.make_loss_module(self.net)
        self.sample_shape = (len(manifest.variables), *manifest.grid)
        # Latent runs on posterior samples: training batches are [mean, logvar] (2C channels) and
        # sigma = exp(logvar / 2) / latent std is computed here, on the training device.
        self.posterior = trains_on_posterior(cfg, manifest.kind)
        if self.posterior:
            self.log_std = torch.as_tensor(np.log(static.std), dtype=torch.float32, device=device).view(-1, 1, 1)

    def make_loss_module(self, net):
        return DiffusionLoss(net, self.schedule)

    def micro_loss(self, module, x, positions, step, global_batch):
        seed = self.cfg.train.seed
        u = stratified_uniform(mix_seed(seed, SALT_TRAIN_GAMMA, step), positions % global_batch, global_batch)
        gamma = self.schedule.gamma(u).to(self.device, torch.float32)
        eps = per_sample_normal(positions, self.sample_shape, seed, SALT_TRAIN_NOISE, self.device)
        if self.posterior and step >= 0:  # validation batches hold the means only and score them
            channels = self.sample_shape[0]
            if x.shape[1] != 2 * channels:
                raise ValueError(f"posterior training needs [mean, logvar] batches of {2 * channels} channels")
            x, logvar = x[:, :channels], x[:, channels:]
            z_eps = per_sample_normal(positions, self.sample_shape, seed, SALT_POSTERIOR, self.device)
            x = x + torch.exp(0.5 * logvar.float() - self.log_std) * z_eps
        x, cond = self.condition(x, positions)
        loss, per_sample = module(x, self.mask, gamma, eps) if cond is None else module(x, self.mask, gamma, eps, cond)
        return loss, {"gamma": gamma.detach().float(), "weighted": per_sample.detach().float()}

    def condition(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what the denoiser learns to generate, its condition): the batch itself, none."""
        return x, None

    def after_step(self, gathered):
        gamma, weighted = gathered["gamma"], gathered["weighted"]
        self.schedule.update(gamma, weighted)
        edges = torch.linspace(self.cfg.diffusion.gamma_min, self.cfg.diffusion.gamma_max, self.gamma_bins + 1)
        index = torch.bucketize(gamma.cpu(), edges[1:-1])
        logs = {}
        for b in range(self.gamma_bins):
            chosen = weighted.cpu()[index == b]
            if len(chosen):
                logs[f"loss_gamma_{edges[b]:+.0f}_{edges[b + 1]:+.0f}"] = float(chosen.mean())
        return logs

    def state_dict(self):
        return {"schedule": self.schedule.state_dict()}

    def load_state_dict(self, state):
        self.schedule.load_state_dict(state["schedule"])


class RefinerTask(DiffusionTask):
    """A residual refiner (docs/refiner.md): diffusion on ``(x - decode(z)) / scale`` given ``decode(z)``.

    z is drawn from the VAE's posterior as the latent run it refines trained (seeded from the
    sample's stream position, like every training noise); the VAE is the one that encoded that
    run's latents, frozen. The residual's std per channel is measured on ``refine.scale_states``
    evenly spread training states when the task is built (the same on every rank) and stored in
    the network's buffer, so it travels with the weights and a resumed run keeps its own.
    """

    name = "refiner"

    def __init__(self, cfg, manifest, static, device) -> None:
        super().__init__(cfg, manifest, static, device)
        base = latent_base(cfg)
        check_same_grid(base, static, str(cfg.data.path))
        self.base = base
        self.posterior_samples = base.posterior_samples
        self.vae = load_vae(base.provenance, device).model
        self.fields = FieldScaler(static, device)
        self.latent_shape = tuple(self.vae.latent_shape(*manifest.grid))
        states = ShardedDataset(cfg.data.path, split=cfg.data.train_split)
        chosen = evenly_spaced(len(states), cfg.refine.scale_states)
        self.net.set_residual_scale(
            residual_scale(self.vae, self.fields, torch.stack([states[int(i)] for i in chosen]))
        )

    def condition(self, x, positions):
        eps = None
        if self.posterior_samples:
            eps = per_sample_normal(positions, self.latent_shape, self.cfg.train.seed, SALT_POSTERIOR, self.device)
        decoded = self.fields.to_norm(reconstruct(self.vae, self.fields.to_phys(x), self.fields.mask, eps))
        return (x.float() - decoded) / self.net.scale() * self.fields.mask, decoded

    def state_dict(self):
        return {**super().state_dict(), "base": base_identity(self.base)}

    def load_state_dict(self, state):
        check_base_identity(state.get("base"), self.base, f"{self.cfg.run.dir} (resumed)", pairs=True)
        super().load_state_dict(state)


def build_task(cfg: ExperimentConfig, manifest: Manifest, static: Static, device: torch.device) -> Task:
    tasks = {"autoencoder": AutoencoderTask, "diffusion": DiffusionTask, "refiner": RefinerTask}
    return tasks[cfg.stage](cfg, manifest, static, device)
