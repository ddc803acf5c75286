"""The speed benchmark's measurements: training steps, sampler calls, the VAE, one process.

See ``benchmarks.speed`` for what is measured and why; this module does the measuring and
``summarise`` turns raw timings into ratios, achieved FLOP/s and efficiency figures.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import torch

from benchmarks.speed.compiled import compiled_calls
from benchmarks.speed.flops import vae_stats
from benchmarks.speed.latent_paths import measure_latent_paths
from benchmarks.speed.plan import NETWORK_EVALS, SAMPLER_STEPS
from benchmarks.speed.setup import Case, Setup, build_bench_vae, build_denoiser, halving_batch_on_oom, make_setup
from benchmarks.speed.summary import summarise
from benchmarks.speed.sweep import measure_matmul_flops, sweep_space
from benchmarks.speed.timing import autocast, log, peak_memory_mb, reset_peak_memory, timed
from hpc_seaice.config import config_to_dict


def measure_training(net: torch.nn.Module, shape: Sequence[int], mask: torch.Tensor, case: Case) -> dict[str, Any]:
    """Steps of the trainer's DDPEngine on fixed inputs: forward, diffusion loss, backward, clip, AdamW."""
    from hpc_seaice.config import DiffusionConfig, EngineConfig, ExperimentConfig, OptimConfig, TrainConfig
    from hpc_seaice.diffusion.schedule import build_schedule
    from hpc_seaice.train.engines import DDPEngine
    from hpc_seaice.train.tasks import DiffusionLoss

    schedule = build_schedule(DiffusionConfig())
    loss_module = DiffusionLoss(net, schedule)
    batch, plan, device = case.batch, case.plan, case.device
    steps = plan.train_warmup + plan.train_repeats
    cfg = ExperimentConfig(
        optim=OptimConfig(warmup_steps=0),
        train=TrainConfig(max_steps=max(steps, 2)),
        engine=EngineConfig(precision=case.precision),
    )
    engine = DDPEngine(loss_module, cfg, SimpleNamespace(device=device))
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(batch, *shape, generator=generator) * mask.cpu()).to(device)
    eps = torch.randn(batch, *shape, generator=generator).to(device)
    if net.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        gamma = schedule.gamma(torch.rand(batch, generator=generator)).to(device, torch.float32)

        def compute_loss(module: torch.nn.Module, i: int) -> torch.Tensor:
            loss, _ = module(x, mask, gamma, eps)
            return loss

        result = engine.train_step(compute_loss, 1)
        if not math.isfinite(result.loss):
            raise RuntimeError(f"{case.label}: non-finite training loss {result.loss}")

    net.train()
    reset_peak_memory(device)
    timing = timed(step, device, plan.train_warmup, plan.train_repeats, f"{case.label} training (batch {batch})")
    net.zero_grad(set_to_none=True)  # free the gradients before the sampler runs
    return {
        "step_times_s": timing.times,
        "warmup_steps": plan.train_warmup,
        "warmup_s": timing.warmup_s,
        "cpu_share": timing.cpu_share,
        "attempts": len(timing.attempts),
        "median_step_s": timing.median,
        "samples_per_s": batch / timing.median,
        "peak_memory_mb": peak_memory_mb(device),
    }


def measure_sampling(
    net: torch.nn.Module,
    shape: Sequence[int],
    model_mask: torch.Tensor,
    decode: Callable[[torch.Tensor], torch.Tensor],
    case: Case,
) -> dict[str, Any]:
    """Time per network evaluation, per decode and (where planned) the whole sampler + decode."""
    from hpc_seaice.config import DiffusionConfig
    from hpc_seaice.diffusion.sampler import VDenoiser, sampler_sigma_range, sampler_sigmas
    from hpc_seaice.inference.generate import generate

    batch, plan, device, precision, label = case.batch, case.plan, case.device, case.precision, case.label
    diffusion = DiffusionConfig(sampler_steps=SAMPLER_STEPS)
    net.eval()
    denoiser = VDenoiser(net, mask=model_mask)
    noise = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1)).to(device)
    sigma_min, sigma_max = sampler_sigma_range(diffusion)
    sigmas = sampler_sigmas(
        SAMPLER_STEPS, sigma_min, sigma_max, diffusion.sampler_spacing, diffusion.sampler_rho
    ).tolist()
    calls = iter(range(10**9))

    @torch.no_grad()
    def one_evaluation() -> None:
        sigma = sigmas[next(calls) % SAMPLER_STEPS]  # the sampler's own noise levels, in order
        with autocast(device, precision):
            denoiser(noise * sigma, torch.full((batch,), sigma, device=device))

    @torch.no_grad()
    def one_decode() -> None:
        with autocast(device, precision):
            decode(noise)

    @torch.no_grad()
    def whole_sampler() -> None:
        with autocast(device, precision):
            decode(generate(net, noise, model_mask, diffusion, SAMPLER_STEPS))

    reset_peak_memory(device)
    evals = timed(one_evaluation, device, plan.eval_warmup, plan.eval_repeats, f"{label} sampling: network evaluation")
    decodes = timed(one_decode, device, 1, plan.vae_repeats, f"{label} sampling: decode to fields")
    t_eval, t_decode = evals.median, decodes.median
    derived = (NETWORK_EVALS * t_eval + t_decode) / batch
    out: dict[str, Any] = {
        "eval_times_s": evals.times,
        "eval_cpu_share": evals.cpu_share,
        "eval_attempts": len(evals.attempts),
        "median_eval_s": t_eval,
        "decode_times_s": decodes.times,
        "median_decode_s": t_decode,
        "decode_s_per_sample": t_decode / batch,
        "derived_s_per_sample": derived,
        "derived_formula": f"({NETWORK_EVALS} x median network evaluation + median decode) / batch",
    }
    if plan.full_sampling:
        full = timed(
            whole_sampler,
            device,
            plan.sample_warmup,
            plan.sample_repeats,
            f"{label} sampling: {SAMPLER_STEPS} Heun steps + decode",
        )
        out["full_times_s"] = full.times
        out["full_cpu_share"] = full.cpu_share
        out["full_attempts"] = len(full.attempts)
        out["measured_s_per_sample"] = full.median / batch
        out["s_per_sample"] = out["measured_s_per_sample"]
        out["kind"] = "measured"
        out["how"] = f"median of {len(full.times)} end-to-end run(s) of {SAMPLER_STEPS} Heun steps + decode, / batch"
    else:
        out["s_per_sample"] = derived
        out["kind"] = "derived"
        out["how"] = (
            f"derived: ({NETWORK_EVALS} x {t_eval:.3g} s per evaluation [median of {len(evals.times)}] "
            f"+ {t_decode:.3g} s decode) / {batch}"
        )
    out["peak_memory_mb"] = peak_memory_mb(device)
    return out


def measure_vae_encode(vae: torch.nn.Module, shape: Sequence[int], case: Case) -> dict[str, Any]:
    batch, device = case.batch, case.device
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(2)).to(device)

    @torch.no_grad()
    def encode() -> None:
        with autocast(device, case.precision):
            vae.encode(x)

    reset_peak_memory(device)
    timing = timed(encode, device, case.plan.vae_warmup, case.plan.vae_repeats, f"{case.label} encode")
    return {
        "times_s": timing.times,
        "cpu_share": timing.cpu_share,
        "median_s": timing.median,
        "s_per_sample": timing.median / batch,
        "peak_memory_mb": peak_memory_mb(device),
    }


def run_space(setup: Setup, space: str, vae: torch.nn.Module) -> dict[str, Any]:
    """Build one denoiser and measure its training step and its sampler."""
    from hpc_seaice.diffusion.sampler import VDenoiser
    from hpc_seaice.inference.generate import DataSpaceDecoder, LatentDecoder
    from hpc_seaice.models.build import count_parameters

    device, shape, field_mask = setup.device, setup.shapes[space], setup.field_mask
    cfg, net, model_mask = build_denoiser(setup, space)
    training = measure_training(net, shape, model_mask, setup.case(space))
    if space == "data":
        stats = vae_stats()
        decoder = DataSpaceDecoder(
            stats["data_mean"], stats["data_std"], stats["lower"], stats["upper"], field_mask, device
        )

        def decode(x: torch.Tensor) -> torch.Tensor:
            return decoder(x)[0]
    else:
        channels = shape[0]  # standardisation statistics are irrelevant to the cost
        decoder = LatentDecoder(vae, torch.zeros(channels), torch.ones(channels), field_mask, device)

        def decode(x: torch.Tensor) -> torch.Tensor:
            # Un-standardise, one decoder pass, deterministic clamp(mu, l, u), land 0.
            return decoder(x)[0]

    sampling = measure_sampling(net, shape, model_mask, decode, setup.case(space))
    paths = measure_latent_paths(setup, net, model_mask, decode) if space == "latent" else None
    denoiser = VDenoiser(net, mask=model_mask).eval()
    sweep = sweep_space(
        space,
        denoiser,
        decode,
        shape,
        setup.flops[space]["forward"],
        setup.flops["vae"]["decode"] if space == "latent" else 0,
        setup.sweep,
        device,
        setup.precision,
        setup.args.repeats,
    )
    return {
        "preset": setup.presets[space],
        "config": config_to_dict(cfg),  # the preset as resolved now: presets may change over time
        "shape": list(shape),
        "parameters": count_parameters(net),
        "training": training,
        "sampling": sampling,
        "sweep": sweep,
        "compiled": compiled_calls(setup, space, denoiser, vae),
    } | ({"paths": paths} if paths is not None else {})


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Everything, in one process: FLOPs, the VAE, latent side (small, first), then data side."""
    from hpc_seaice.models.build import count_parameters

    setup = make_setup(args)
    device, flops = setup.device, setup.flops
    matmul = measure_matmul_flops(device, setup.precision, n=256 if getattr(args, "toy", False) else 0)
    log(f"dense matmul: {matmul['flops_per_s'] / 1e9:.1f} GFLOP/s ({matmul['how']})")
    data_shape, latent_shape = setup.shapes["data"], setup.shapes["latent"]
    log(
        f"device {device} ({torch.get_num_threads()} threads), precision {setup.precision}, compile {args.compile}, "
        f"batch {setup.batch}; data {setup.presets['data']} {'x'.join(map(str, data_shape))} vs latent "
        f"{setup.presets['latent']} {'x'.join(map(str, latent_shape))} + {setup.presets['vae']}"
    )
    requested = setup.batch

    def both_spaces() -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
        vae = build_bench_vae(setup)
        encode = measure_vae_encode(vae, data_shape, replace(setup.case("latent"), label="VAE"))
        return vae, encode, {space: run_space(setup, space, vae) for space in ("latent", "data")}

    vae, encode, spaces = halving_batch_on_oom(setup, both_spaces)
    vae_info = {
        "config": config_to_dict(setup.vae_cfg),
        "parameters": count_parameters(vae),
        "flops_per_sample": flops["vae"],
        "encode": encode,
        "decode_s_per_sample": spaces["latent"]["sampling"]["decode_s_per_sample"],
    }
    return summarise(setup, requested, flops, spaces, vae_info, matmul)
