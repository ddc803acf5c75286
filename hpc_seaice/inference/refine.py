"""What training and sampling of a residual refiner share (docs/refiner.md).

Training pairs a state ``x`` with its reconstruction ``decode(z)``, z drawn from the VAE's
posterior as the latent run trained on it (``diffusion.latent_posterior``); sampling decodes a
latent run's sample the same way and adds a residual drawn from the refiner. Both go through
:func:`reconstruct` / :class:`FieldScaler` here, so the condition the refiner learns from is the
condition it later sees: physical fields clipped to the bounds (the censored decoder's
deterministic output), land 0, in the refiner's data set's normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from hpc_seaice.config import DiffusionConfig, ExperimentConfig, load_config
from hpc_seaice.data.format.manifest import manifest_path, read_manifest
from hpc_seaice.data.format.provenance import LatentProvenance
from hpc_seaice.data.format.static import Static
from hpc_seaice.diffusion.sampler import VDenoiser, sample_with_config
from hpc_seaice.errors import UserError
from hpc_seaice.inference.generate import DataSpaceDecoder
from hpc_seaice.models.refiner import ResidualRefiner


@dataclass(frozen=True)
class LatentBase:
    """The latent run a refiner refines: its folder, its latent set's provenance, how it trained."""

    run_dir: Path
    provenance: LatentProvenance
    posterior_samples: bool  # the latent run trained on z = mu + sigma * eps (else on mu)


def latent_base(cfg: ExperimentConfig) -> LatentBase:
    """``refine.latent_run`` of a refiner config, checked: a latent diffusion run on the refiner's grid."""
    run = cfg.refine.latent_run
    if not run:
        raise UserError("config key 'refine.latent_run' is empty: a refiner refines a latent diffusion run; name it")
    run_dir = Path(run)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"config key 'refine.latent_run': {run_dir} is not a run folder (no config.yaml)")
    base_cfg = load_config(run_dir / "config.yaml")
    data = str(base_cfg.data.path)
    if base_cfg.stage != "diffusion" or not manifest_path(data).is_file():
        raise UserError(f"config key 'refine.latent_run': {run_dir} is not a diffusion run with its data set")
    manifest = read_manifest(data)
    if manifest.kind != "latent":
        raise UserError(f"config key 'refine.latent_run': {run_dir} is a data-space run; a refiner needs a latent run")
    provenance = LatentProvenance.of(data, manifest)
    provenance.require_vae()
    return LatentBase(run_dir, provenance, base_cfg.diffusion.latent_posterior == "sample")


def check_same_grid(base: LatentBase, static: Static, where: str) -> None:
    """The refiner's fields and the latent run's physical grid must be one coast, or the pairs mean nothing."""
    mask = np.asarray(base.provenance.mask)
    if mask.shape != static.mask.shape or not np.array_equal(mask > 0.5, np.asarray(static.mask) > 0.5):
        raise UserError(
            f"{where}: its land-sea mask {tuple(static.mask.shape)} is not the one of the fields the latent run "
            f"{base.run_dir} encodes {tuple(mask.shape)}"
        )


class FieldScaler:
    """Physical fields <-> a data set's normalised units, land 0 both ways."""

    def __init__(self, static: Static, device: torch.device) -> None:
        def channel(values: np.ndarray) -> Tensor:
            return torch.as_tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)

        self.mean, self.std = channel(static.mean), channel(static.std)
        self.mask = torch.as_tensor(static.mask, dtype=torch.float32, device=device)

    def to_norm(self, phys: Tensor) -> Tensor:
        return (phys.float() - self.mean) / self.std * self.mask

    def to_phys(self, norm: Tensor) -> Tensor:
        return (norm.float() * self.std + self.mean) * self.mask


@torch.no_grad()
def reconstruct(vae: nn.Module, phys: Tensor, mask: Tensor, eps: Tensor | None = None) -> Tensor:
    """The VAE's decoded field for physical states ``phys``: clipped, land 0 (z = mu, or mu + sigma * eps)."""
    mean, logvar = vae.encode(vae.normalize(phys) * mask)
    z = mean if eps is None else mean + torch.exp(0.5 * logvar) * eps
    return vae.decode(z, mask=mask)


@torch.no_grad()
def residual_scale(vae: nn.Module, fields: FieldScaler, states: Tensor, batch: int = 8) -> Tensor:
    """Std per channel of ``x - decode(mu(x))`` over the ocean cells of normalised ``states`` [N, C, H, W]."""
    ocean = fields.mask > 0.5
    total = torch.zeros(states.shape[1], dtype=torch.float64)
    count = 0
    for chunk in states.split(batch):
        chunk = chunk.to(fields.mask.device)
        recon = fields.to_norm(reconstruct(vae, fields.to_phys(chunk), fields.mask))
        diff = (chunk.float() - recon)[:, :, ocean]
        total += diff.double().square().sum(dim=(0, 2)).cpu()
        count += diff.shape[0] * diff.shape[2]
    return (total / max(count, 1)).sqrt().clamp_min(1e-6).float()


class Refinement:
    """Decoded physical fields + a residual drawn from the refiner -> (clipped fields, raw values)."""

    def __init__(
        self,
        refiner: ResidualRefiner,
        static: Static,
        lower: np.ndarray,
        upper: np.ndarray,
        diffusion: DiffusionConfig,
        steps: int,
        device: torch.device,
    ) -> None:
        self.refiner = refiner
        self.fields = FieldScaler(static, device)
        self.decode = DataSpaceDecoder(static.mean, static.std, lower, upper, static.mask, device)
        self.diffusion = diffusion
        self.steps = steps

    @torch.no_grad()
    def __call__(self, decoded: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        cond = self.fields.to_norm(decoded)
        denoiser = VDenoiser(partial(self.refiner, cond=cond), mask=self.fields.mask)
        residual = sample_with_config(denoiser, noise, self.diffusion, self.steps)
        return self.decode(cond + residual.float() * self.refiner.scale())
