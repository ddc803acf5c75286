"""The latent paths that do not smooth, timed end to end beside the plain latent sampler (docs/refiner.md).

Two things can follow the VAE's decoder: a residual refiner (the shipped ``configs/{paper,demo}/
refiner.yaml``: its U-Net preset and its few-step sampler) and the spectral decoder noise (one
FFT pair per sample). Each path is timed as a whole, from latent noise to refined physical
fields: the latent run's Heun steps, the decode, then the refinement or the noise, in one timed
call, with the same batch, device and precision as the data-space and latent measurements of the
same run. Their cost against the data-space sample is the speed side of the smoothing trade-off.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from benchmarks.common import REPO_ROOT
from benchmarks.speed.flops import unet_config, vae_stats
from benchmarks.speed.plan import SAMPLER_STEPS
from benchmarks.speed.setup import Setup
from benchmarks.speed.timing import autocast, log, peak_memory_mb, reset_peak_memory, timed

REFINER_CONFIGS = {False: "configs/paper/refiner.yaml", True: "configs/demo/refiner.yaml", "toy": None}


def refiner_settings(setup: Setup) -> tuple[Any, Any]:
    """(U-Net config, diffusion config) of the shipped refiner for this run's geometry (toy: tiny-unet)."""
    from hpc_seaice.config import DiffusionConfig, load_config

    toy = getattr(setup.args, "toy", False)
    path = REFINER_CONFIGS["toy" if toy else setup.args.quick]
    if path is None:
        cfg = unet_config("tiny-unet", setup.args.channels_last).model_copy(update={"cond_channels": 5})
        return cfg, DiffusionConfig(sampler_steps=3, sampler_spacing="edm", sampler_rho=3.0, sampler_gamma_min=-3.0)
    config = load_config(REPO_ROOT / path)
    cfg = unet_config(config.unet.preset, setup.args.channels_last)
    return cfg, config.diffusion


def measure_latent_paths(
    setup: Setup, latent_net: torch.nn.Module, latent_mask: torch.Tensor, decode: Callable[[torch.Tensor], Any]
) -> dict[str, Any]:
    """The plain latent sampler followed by the refiner, and by the spectral decoder noise, each timed whole."""
    from hpc_seaice.config import DiffusionConfig
    from hpc_seaice.inference.decoder_noise import SpectralDecoderNoise
    from hpc_seaice.inference.generate import generate
    from hpc_seaice.inference.refine import Refinement
    from hpc_seaice.models.build import build_unet, count_parameters, forward_flops
    from hpc_seaice.models.refiner import ResidualRefiner

    device, precision, batch = setup.device, setup.precision, setup.batch
    case = setup.case("latent")
    data_shape, latent_shape = setup.shapes["data"], setup.shapes["latent"]
    stats = vae_stats()
    static = SimpleNamespace(mean=stats["data_mean"], std=stats["data_std"], mask=setup.field_mask.cpu().numpy())
    unet_cfg, diffusion = refiner_settings(setup)
    torch.manual_seed(0)
    refiner = ResidualRefiner(build_unet(unet_cfg), data_shape[0]).to(device).eval()
    refiner.net.set_ocean_fraction(setup.field_mask)
    if setup.args.compile:
        refiner.net.compile()
    steps = diffusion.sampler_steps
    refine = Refinement(refiner, static, stats["lower"], stats["upper"], diffusion, steps, device)
    amplitude = torch.full(data_shape, 0.1 / data_shape[-1], device=device)  # the values do not affect speed
    spectral = SpectralDecoderNoise(amplitude, static, stats["lower"], stats["upper"])
    latent_diffusion = DiffusionConfig(sampler_steps=SAMPLER_STEPS)
    noise = torch.randn(batch, *latent_shape, generator=torch.Generator().manual_seed(1)).to(device)
    field_noise = torch.randn(batch, *data_shape, generator=torch.Generator().manual_seed(2)).to(device)

    def latent_fields() -> torch.Tensor:
        return decode(generate(latent_net, noise, latent_mask, latent_diffusion, SAMPLER_STEPS))

    @torch.no_grad()
    def refined() -> None:
        with autocast(device, precision):
            refine(latent_fields(), field_noise)

    @torch.no_grad()
    def noisy() -> None:
        with autocast(device, precision):
            spectral(latent_fields(), field_noise)

    @torch.no_grad()
    def refinement_only() -> None:
        with autocast(device, precision):
            refine(field_noise.abs(), field_noise)

    with torch.device("meta"):
        meta = ResidualRefiner(build_unet(unet_cfg.model_copy(update={"compile": False})), data_shape[0])
        x = torch.empty(1, *data_shape)
        refiner_forward = forward_flops(meta, (x, torch.zeros(1), x))
    out: dict[str, Any] = {
        "refiner": {
            "preset": unet_cfg.preset,
            "parameters": count_parameters(refiner),
            "forward_flops": refiner_forward,
            "steps": steps,
            "network_evaluations": 2 * steps - 1,
            "sampler": f"{diffusion.sampler_spacing} spacing, rho {diffusion.sampler_rho:g}, "
            f"gamma {diffusion.sampler_gamma_min:g} .. {diffusion.sampler_gamma_max:g}",
        }
    }
    reset_peak_memory(device)
    for name, fn, what in (
        ("refinement_only", refinement_only, f"refiner alone: {steps} Heun steps on decoded fields"),
        ("latent_refined", refined, f"latent {SAMPLER_STEPS} steps + decode + refiner {steps} steps"),
        ("latent_spectral", noisy, f"latent {SAMPLER_STEPS} steps + decode + spectral noise"),
    ):
        t = timed(fn, device, case.plan.sample_warmup, case.plan.sample_repeats, f"latent path: {what}")
        out[name] = {"times_s": t.times, "cpu_share": t.cpu_share, "s_per_sample": t.median / batch, "how": what}
        log(f"latent path {name}: {t.median / batch:.3g} s per sample")
    out["peak_memory_mb"] = peak_memory_mb(device)
    out["refiner"]["flops_per_sample"] = out["refiner"]["network_evaluations"] * refiner_forward
    return out


def path_ratios(spaces: dict[str, Any], paths: dict[str, Any]) -> dict[str, float]:
    """Data-space sampling time per sample over each latent path's, in the same run."""
    data = spaces["data"]["sampling"]["s_per_sample"]
    return {
        "sampling_time_latent_refined": data / paths["latent_refined"]["s_per_sample"],
        "sampling_time_latent_spectral": data / paths["latent_spectral"]["s_per_sample"],
        "refiner_share_of_data_sample": paths["refinement_only"]["s_per_sample"] / data,
    }
