"""Build the networks from their configs, and measure them (parameters, forward FLOPs).

``channels_last`` and ``compile`` are applied here, not in the modules: ``nn.Module.compile``
compiles in place, so state_dict keys stay the same with and without compilation (no
``_orig_mod.`` prefix) and checkpoints move freely between compiled and eager runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import yaml
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from hpc_seaice.config import (
    PRESET_DIR,
    DiffusionConfig,
    ExperimentConfig,
    UNetConfig,
    VAEConfig,
    config_from_dict,
    preset_names,
)
from hpc_seaice.data.format.manifest import Manifest
from hpc_seaice.data.format.provenance import LatentProvenance
from hpc_seaice.data.format.static import Static
from hpc_seaice.errors import UserError
from hpc_seaice.models.refiner import ResidualRefiner
from hpc_seaice.models.unet import UNet
from hpc_seaice.models.vae import VAE


def _finish(model: nn.Module, channels_last: bool, compile: bool, parts: Sequence[nn.Module] = ()) -> nn.Module:
    """Apply channels_last and in-place compilation (of ``parts``, or of the model's forward)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        for part in parts or (model,):
            part.compile()
    return model


def build_unet(cfg: UNetConfig, diffusion_cfg: DiffusionConfig | None = None) -> UNet:
    """The denoiser for ``cfg``, conditioned on the training log-SNR range of ``diffusion_cfg``."""
    d = diffusion_cfg or DiffusionConfig()
    return _finish(UNet(cfg, gamma_min=d.gamma_min, gamma_max=d.gamma_max), cfg.channels_last, cfg.compile)


def build_vae(
    cfg: VAEConfig,
    *,
    data_mean: Sequence[float] | Tensor,
    data_std: Sequence[float] | Tensor,
    lower: Sequence[float] | Tensor,
    upper: Sequence[float] | Tensor,
) -> VAE:
    """The VAE with the data set's normalisation statistics and physical bounds (per channel)."""
    vae = VAE(cfg, data_mean=data_mean, data_std=data_std, lower=lower, upper=upper)
    # The VAE is used through encode/decode/loss, not forward: compile its two networks.
    return _finish(vae, cfg.channels_last, cfg.compile, parts=(vae.encoder, vae.decoder))


def build_stage_model(
    cfg: ExperimentConfig, manifest: Manifest, static: Static, provenance: LatentProvenance | None = None
) -> nn.Module:
    """The network of ``cfg.stage`` for a data set (its manifest and static fields), checked to fit it.

    Training builds it to train, inference to load a run's weights into: one definition, so a
    checkpoint always meets the network it was trained as. A latent set's denoiser sees the ocean
    fraction of the fields its ``provenance`` resolves (read from the manifest when not given).
    """
    channels = len(manifest.variables)
    if cfg.stage in ("autoencoder", "refiner") and manifest.kind != "fields":
        raise UserError(f"{cfg.data.path}: the {cfg.stage} trains on fields, this is a {manifest.kind} set")
    if cfg.stage == "autoencoder":
        if cfg.vae.in_channels != channels:
            raise UserError(
                f"config key 'vae.in_channels' is {cfg.vae.in_channels} but {cfg.data.path} has {channels} variables"
            )
        if static.mean is None or static.std is None:
            raise UserError(f"{cfg.data.path}: no normalisation statistics; run hpc-seaice data stats")
        try:
            vae = build_vae(
                cfg.vae,
                data_mean=torch.as_tensor(static.mean, dtype=torch.float32),
                data_std=torch.as_tensor(static.std, dtype=torch.float32),
                lower=torch.as_tensor(manifest.lower, dtype=torch.float32),
                upper=torch.as_tensor(manifest.upper, dtype=torch.float32),
            )
        except ValueError as exc:
            raise UserError(f"config section 'vae' does not build a network: {exc}") from None
        try:
            vae.latent_shape(*manifest.grid)
        except ValueError as exc:
            raise UserError(f"{cfg.data.path} (grid {manifest.grid}) does not fit the vae config: {exc}") from None
        if cfg.vae.mask_channel:
            vae.set_ocean_mask(torch.as_tensor(static.mask, dtype=torch.float32))
        return vae
    expected = channels if cfg.stage == "refiner" else 0
    if cfg.unet.cond_channels != expected:
        need = (
            f"a refiner is conditioned on the decoded field, {channels} channels for {cfg.data.path}"
            if expected
            else "only stage 'refiner' has a condition"
        )
        raise UserError(f"config key 'unet.cond_channels' is {cfg.unet.cond_channels}: {need}")
    if cfg.unet.in_channels != channels:
        raise UserError(
            f"config key 'unet.in_channels' is {cfg.unet.in_channels} but {cfg.data.path} "
            f"({manifest.kind}) has {channels} channels"
        )
    try:
        net = build_unet(cfg.unet, cfg.diffusion)  # channels_last / torch.compile as configured
    except ValueError as exc:
        raise UserError(f"config section 'unet' does not build a network: {exc}") from None
    try:
        net.check_input(torch.empty(1, channels, *manifest.grid, device="meta"))
    except ValueError as exc:
        raise UserError(f"{cfg.data.path} (grid {manifest.grid}) does not fit the unet config: {exc}") from None
    if cfg.unet.mask_channel:
        if manifest.kind == "fields":
            ocean = static.mask
        else:
            ocean = (provenance or LatentProvenance.of(cfg.data.path, manifest)).ocean_fraction()
        net.set_ocean_fraction(torch.as_tensor(ocean, dtype=torch.float32))
    return ResidualRefiner(net, channels) if cfg.stage == "refiner" else net


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def forward_flops(model: nn.Module, example_inputs: Sequence[Tensor], fn: str = "forward") -> int:
    """FLOPs (multiply-add = 2) of one call of ``model.<fn>(*example_inputs)``, no gradient.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls, attention);
    element-wise work (norms, activations) is not counted. Works on the meta device, which
    measures paper-size networks without allocating or computing anything.
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        getattr(model, fn)(*example_inputs)
    return counter.get_total_flops()


def load_model_preset(name: str) -> UNetConfig | VAEConfig:
    """The config of preset ``name`` (``hpc_seaice/presets/<name>.yaml``): a UNetConfig or VAEConfig by its keys."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = preset_names()
        raise UserError(f"unknown model preset {name!r} (known: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    vae_only = {"latent_channels", "decoder", "beta", "sigma_init"}
    section = "vae" if vae_only & set(data) else "unet"
    return getattr(config_from_dict({section: {"preset": name}}), section)
