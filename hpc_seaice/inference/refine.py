"""What training and sampling of a residual refiner share (docs/refiner.md).

Training pairs a state ``x`` with its reconstruction ``decode(z)``, z drawn from the VAE's
posterior as the latent run trained on it (``diffusion.latent_posterior``); sampling decodes a
latent run's sample the same way and adds a residual drawn from the refiner. Both go through
:func:`reconstruct` / :class:`FieldScaler` here, so the condition the refiner learns from is the
condition it later sees: physical fields clipped to the bounds (the censored decoder's
deterministic output), land 0, in the refiner's data set's normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hpc_seaice.config import DiffusionConfig, ExperimentConfig, load_config
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.provenance import LatentProvenance
from hpc_seaice.data.format.static import Static
from hpc_seaice.diffusion.sampler import VDenoiser, sample_with_config
from hpc_seaice.errors import UserError
from hpc_seaice.inference.generate import DataSpaceDecoder
from hpc_seaice.models.refiner import ResidualRefiner
from hpc_seaice.runtime.identity import require_data_set


@dataclass(frozen=True)
class LatentBase:
    """The latent run a refiner refines: its folder, its latent set's provenance, how it trained."""

    run_dir: Path
    provenance: LatentProvenance
    posterior_samples: bool  # the latent run trained on z = mu + sigma * eps (else on mu)


def latent_base(cfg: ExperimentConfig, refiner_run: Path | None = None) -> LatentBase:
    """``refine.latent_run`` of a refiner config, checked: a latent diffusion run on the refiner's grid.

    ``refiner_run``: the trained refiner being loaded (sampling), whose ``config.yaml`` a moved latent
    run is corrected in; None when training starts (then the config key is what to change).
    """
    run = cfg.refine.latent_run
    if not run:
        raise UserError("config key 'refine.latent_run' is empty: a refiner refines a latent diffusion run; name it")
    run_dir = Path(run)
    if not (run_dir / "config.yaml").is_file():
        if refiner_run is not None:
            raise UserError(
                f"{refiner_run}: the latent run it refines, {run_dir}, is gone (no config.yaml; moved?); set "
                f"refine.latent_run in {refiner_run / 'config.yaml'} to where it is now"
            )
        raise UserError(
            f"config key 'refine.latent_run': {run_dir} is not a run folder (no config.yaml); name the folder of "
            "a trained latent diffusion run"
        )
    base_cfg = load_config(run_dir / "config.yaml")
    if base_cfg.stage != "diffusion":
        raise UserError(
            f"config key 'refine.latent_run': {run_dir} is an {base_cfg.stage} run; a refiner needs a latent "
            "diffusion run"
        )
    data = str(base_cfg.data.path)
    require_data_set(run_dir, data, " (refine.latent_run)")
    manifest = read_manifest(data)
    if manifest.kind != "latent":
        raise UserError(f"config key 'refine.latent_run': {run_dir} is a data-space run; a refiner needs a latent run")
    provenance = LatentProvenance.of(data, manifest)
    provenance.require_vae()
    return LatentBase(run_dir, provenance, base_cfg.diffusion.latent_posterior == "sample")


def base_identity(base: LatentBase) -> dict[str, Any]:
    """What a refiner's training pairs depend on: the VAE's weights (sha256) and how z was drawn.

    Kept in the refiner's checkpoints (its task state): a resumed run and a sampled one must find
    the same VAE behind ``refine.latent_run``, or the learned residual belongs to another decoder.
    """
    return {
        "latent_run": str(base.run_dir),
        "autoencoder_run": str(base.provenance.autoencoder_run),
        "encoder_sha256": base.provenance.encoder_sha256,
        "posterior_samples": base.posterior_samples,
    }


def check_base_identity(recorded: dict[str, Any] | None, base: LatentBase, where: str, pairs: bool) -> None:
    """Refuse a latent run whose VAE is not the one the refiner trained with (one line, naming both).

    ``recorded``: :func:`base_identity` at training (None: a checkpoint that predates the record,
    or latents without a recorded VAE hash: nothing to compare). ``pairs``: also the posterior
    draw (resuming continues the same pairs; sampling only decodes).
    """
    if not recorded:
        return
    now = base_identity(base)
    old_sha, new_sha = recorded.get("encoder_sha256"), now["encoder_sha256"]
    if old_sha and new_sha and old_sha != new_sha:
        vae = recorded.get("autoencoder_run")
        raise UserError(
            f"{where}: trained on the decoded fields of VAE weights sha256 {old_sha[:12]} ({vae}), "
            f"but the latent run {base.run_dir} now decodes with {new_sha[:12]} ({now['autoencoder_run']}: "
            "retrained?); train the refiner again on this latent run, or point refine.latent_run to the one it "
            f"was trained with ({recorded.get('latent_run')})"
        )
    if pairs and recorded.get("posterior_samples") != now["posterior_samples"]:
        draw = {True: "posterior samples", False: "posterior means"}
        raise UserError(
            f"{where}: its pairs were decoded from {draw[bool(recorded.get('posterior_samples'))]}, but the latent "
            f"run {base.run_dir} now trains on {draw[now['posterior_samples']]} (diffusion.latent_posterior); "
            "resume with that setting or use a new run.dir"
        )


def check_same_grid(base: LatentBase, static: Static, where: str) -> None:
    """The refiner's fields and the latent run's physical grid must be one coast, or the pairs mean nothing."""
    mask = np.asarray(base.provenance.mask)
    if mask.shape != static.mask.shape:
        raise UserError(
            f"{where}: its grid {tuple(static.mask.shape)} is not the one of the fields the latent run "
            f"{base.run_dir} decodes onto {tuple(mask.shape)}"
        )
    differ = int(np.sum((mask > 0.5) != (np.asarray(static.mask) > 0.5)))
    if differ:
        raise UserError(
            f"{where}: its land-sea mask differs in {differ} cells from the one of the fields the latent run "
            f"{base.run_dir} decodes onto ({base.provenance.fields_dataset}); train the refiner on those fields"
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
@torch.no_grad()
def residuals(vae: nn.Module, fields: FieldScaler, states: Tensor, batch: int = 8) -> Iterator[Tensor]:
    """``x - decode(mu(x))`` of normalised ``states`` [N, C, H, W], ``batch`` states at a time (land 0):
    what the refiner's scale and the spectral decoder noise are both measured on."""
    for chunk in states.split(batch):
        chunk = chunk.to(fields.mask.device)
        yield chunk.float() - fields.to_norm(reconstruct(vae, fields.to_phys(chunk), fields.mask))


@torch.no_grad()
def residual_scale(vae: nn.Module, fields: FieldScaler, states: Tensor, batch: int = 8) -> Tensor:
    """Std per channel of ``x - decode(mu(x))`` over the ocean cells of normalised ``states`` [N, C, H, W]."""
    ocean = fields.mask > 0.5
    total = torch.zeros(states.shape[1], dtype=torch.float64)
    count = 0
    for residual in residuals(vae, fields, states, batch):
        diff = residual[:, :, ocean]
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
