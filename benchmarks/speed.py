"""Latent versus data-space diffusion: training throughput and sampling time, one process, one device.

    python -m benchmarks.speed                      # paper geometry: paper-data 5x512x512 vs paper-latent 16x64x64
    python -m benchmarks.speed --quick              # demo-data 5x128x128 vs demo-latent 16x16x16 (seconds)
    python -m benchmarks.speed --device cuda --compile

The paper says latent diffusion is "about 25 times faster" without saying at what (PAPER_NOTES
5). Both candidates are measured here with the same device, precision and batch size:

- training: one optimizer step of the real trainer engine (``DDPEngine.train_step``: forward,
  the real diffusion loss, backward, gradient clipping, AdamW) on fixed inputs already on the
  device, timed step by step after warm-up; throughput = batch / median step time. Data loading,
  per-sample noise generation and the EMA update are the trainer's and are measured by
  ``benchmarks.scaling`` through the real trainer; they are not part of this number.
- VAE encode: what latent caching saves per training sample (the LDM never runs the encoder).
- sampling: time per generated sample of the real sampler (``inference.generate.generate``: 20
  deterministic Heun steps = 39 network evaluations) plus the way back to physical fields (one
  VAE decoder pass for latents; un-normalise and clip for data space).
- FLOPs of every network call counted by ``torch.utils.flop_counter`` on the meta device
  (convolutions, matmuls, attention; element-wise work is not counted), achieved FLOP/s, MFU on
  a GPU with a known bf16 peak, and peak memory.

Where a full measurement is too slow (the data-space sampler on a CPU: 39 evaluations of a
183-GFLOP network), the time per network evaluation is measured on a few evaluations and the
per-sample time is *derived* from it; the JSON and the table say which figures are derived and
by which formula. The latent sampler is timed end to end and also derived the same way, which
shows how close the derivation is.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from benchmarks.common import environment, markdown_table, results_dir

SAMPLER_STEPS = 20
NETWORK_EVALS = 2 * SAMPLER_STEPS - 1  # Heun: two evaluations per step, one for the last (Euler) step
TARGET_RATIO = 25.0

# Dense bf16 tensor-core peak (FLOP/s) by device name, for the MFU. The H200 has the H100 SXM's
# compute (more and faster memory only). Other devices: MFU is reported as null.
BF16_PEAK_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989.4e12),
    ("H200", 989.4e12),
    ("A100", 312e12),
)

GEOMETRY = {
    # quick: (data preset, latent preset, vae preset, grid side)
    False: ("paper-data", "paper-latent", "paper-vae", 512),
    True: ("demo-data", "demo-latent", "demo-vae", 128),
}


@dataclass
class Plan:
    """How many warm-up and timed repeats each measurement gets on this device."""

    train_warmup: int
    train_repeats: int
    eval_warmup: int
    eval_repeats: int
    vae_warmup: int
    vae_repeats: int
    full_sampling: bool  # time the whole sampler end to end (else derive it from timed evaluations)
    sample_warmup: int
    sample_repeats: int


def make_plans(device: torch.device, repeats: int | None, full_sampling: bool) -> dict[str, Plan]:
    """Per space: a GPU measures everything with many repeats; a CPU measures the data-space
    network on a few steps and derives its sampling time, but measures everything it reports."""
    if device.type == "cuda":
        r = repeats or 10
        gpu = Plan(3, r, 3, r, 2, r, True, 1, max(1, min(r, 3)))
        return {"data": gpu, "latent": gpu}
    data = Plan(1, repeats or 2, 1, repeats or 2, 1, repeats or 2, full_sampling, 0, 1)
    latent = Plan(2, repeats or 10, 1, repeats or 5, 1, repeats or 2, True, 0, repeats or 2)
    return {"data": data, "latent": latent}


# --- small utilities ----------------------------------------------------------------------------


def log(text: str) -> None:
    print(f"[speed {time.strftime('%H:%M:%S')}] {text}", flush=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks.speed: --device cuda but torch sees no GPU")
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    return ("bf16" if device.type == "cuda" else "fp32") if name == "auto" else name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s, what it is) of this device at this precision, or (None, why not)."""
    if device.type != "cuda":
        return None, "no MFU on CPU (no reference peak)"
    name = torch.cuda.get_device_name(device)
    if precision != "bf16":
        return None, f"no MFU: peak known for bf16 only ({name}, precision {precision})"
    for key, value in BF16_PEAK_FLOPS:
        if key in name:
            return value, f"{name}: {value / 1e12:.0f} TFLOP/s bf16 dense"
    return None, f"no MFU: bf16 peak of {name} unknown"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """GPU: peak allocated since the phase started. CPU: the process's peak RSS so far (cumulative)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Timing:
    times: list[float]  # wall seconds of each timed call
    warmup_s: float  # wall seconds of all warm-up calls
    cpu_share: float  # process CPU time / (wall time x threads) over the timed calls
    attempts: list[dict[str, Any]]  # every measurement made, when contended ones were repeated

    @property
    def median(self) -> float:
        return statistics.median(self.times)


# On a CPU, a measurement during which other processes took the cores (CPU share below this) is
# repeated up to RETRIES times and the least contended attempt is kept (set by --min-cpu-share,
# --retries). All attempts are recorded.
CONTENTION = {"min_cpu_share": 0.85, "retries": 2}


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int, label: str) -> Timing:
    """Wall times of ``repeats`` calls after ``warmup`` calls (synchronised).

    Also the share of the wall time this process spent on its threads' CPUs: well below 1 on a
    CPU run means other work took the cores, and the timings are inflated and noisy; such a
    measurement is repeated (see ``CONTENTION``).
    """
    t_warm = time.perf_counter()
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        log(f"{label}: warm-up {i + 1}/{warmup} {time.perf_counter() - t0:.3f} s")
    warm_s = time.perf_counter() - t_warm
    threads = torch.get_num_threads()
    attempts: list[dict[str, Any]] = []
    retries = CONTENTION["retries"] if device.type == "cpu" else 0
    for attempt in range(retries + 1):
        times = []
        cpu0 = time.process_time()
        for i in range(repeats):
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
            if repeats <= 5 or i in (0, repeats - 1):
                log(f"{label}: timed {i + 1}/{repeats} {times[-1]:.3f} s")
        share = (time.process_time() - cpu0) / max(sum(times) * threads, 1e-9)
        attempts.append({"times": times, "cpu_share": share})
        if device.type != "cpu" or share >= CONTENTION["min_cpu_share"]:
            break
        if attempt < retries:
            log(f"{label}: CPU share {100 * share:.0f}% (other load); measuring again")
    best = max(attempts, key=lambda a: a["cpu_share"])
    return Timing(best["times"], warm_s, best["cpu_share"], attempts)


def ocean_mask(side: int, device: torch.device) -> torch.Tensor:
    """A disk of ocean (about half the cells, like the Arctic grid) with land around it."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    return ((yy.square() + xx.square()) < 0.64).float().to(device)


# --- model construction and FLOP counting --------------------------------------------------------


def unet_config(preset: str, channels_last: bool) -> Any:
    from hpc_seaice.models.build import load_model_preset

    cfg = load_model_preset(preset)
    cfg.channels_last = channels_last
    cfg.compile = False  # compiled explicitly below, after the FLOPs are counted
    return cfg


def vae_stats() -> dict[str, list[float]]:
    """Normalisation statistics and physical bounds of the five variables (values do not affect speed)."""
    from hpc_seaice.data.variables import BOUNDS, VARIABLES

    return {
        "data_mean": [0.0] * len(VARIABLES),
        "data_std": [1.0] * len(VARIABLES),
        "lower": [BOUNDS[v][0] for v in VARIABLES],
        "upper": [BOUNDS[v][1] for v in VARIABLES],
    }


def grouped_conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    groups,
    output_mask,
    out_shape,
    **kwargs,
) -> int:
    """FLOPs of ``aten.convolution_backward`` that respect ``groups``.

    torch's own formula (this torch: 2.13) counts the weight gradient of a grouped convolution
    as if it were dense, ``groups`` times too many: for the depthwise 7x7 convolutions of the
    ConvNeXt blocks (groups = channels) that inflates a training step about 10x over its forward.
    Same formula otherwise, with the weight-gradient term divided by ``groups`` (the fix of
    pytorch/pytorch#183405).
    """
    from torch.utils.flop_counter import conv_flop_count

    def t(shape: Sequence[int]) -> list[int]:
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        if transposed:
            weight = conv_flop_count(t(grad_out_shape), t(x_shape), t(out_shape[1]), transposed=False)
        else:
            weight = conv_flop_count(t(x_shape), t(grad_out_shape), t(out_shape[1]), transposed=False)
        flops += weight // groups
    return flops


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` by ``FlopCounterMode``, with grouped convolution backward counted right."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flop}
    )
    with counter:
        fn()
    return int(counter.get_total_flops())


def unet_flops(cfg: Any, shape: Sequence[int]) -> dict[str, int]:
    """FLOPs per sample of one forward and of one training forward+backward, on the meta device."""
    from hpc_seaice.models.build import build_unet

    with torch.device("meta"):
        net = build_unet(cfg)
        x = torch.zeros(1, *shape)
        gamma = torch.zeros(1)
        with torch.no_grad():
            forward = count_flops(lambda: net(x, gamma))
        train = count_flops(lambda: net(x, gamma).float().square().mean().backward())
    return {"forward": forward, "train_step": train}


def vae_flops(cfg: Any, shape: Sequence[int]) -> dict[str, int]:
    from hpc_seaice.models.build import build_vae

    with torch.device("meta"):
        vae = build_vae(cfg, **vae_stats())
        latent = vae.latent_shape(*shape[1:])
        with torch.no_grad():
            encode = count_flops(lambda: vae.encode(torch.zeros(1, *shape)))
            decode = count_flops(lambda: vae.decode_params(torch.zeros(1, *latent)))
    return {"encode": encode, "decode": decode}


# --- the measurements ----------------------------------------------------------------------------


def measure_training(
    net: torch.nn.Module,
    shape: Sequence[int],
    mask: torch.Tensor,
    batch: int,
    plan: Plan,
    device: torch.device,
    precision: str,
    label: str,
) -> dict[str, Any]:
    """Steps of the trainer's DDPEngine on fixed inputs: forward, diffusion loss, backward, clip, AdamW."""
    from hpc_seaice.config import DiffusionConfig, EngineConfig, OptimConfig, TrainConfig
    from hpc_seaice.diffusion.schedule import build_schedule
    from hpc_seaice.train.engines import DDPEngine
    from hpc_seaice.train.tasks import DiffusionLoss

    schedule = build_schedule(DiffusionConfig())
    loss_module = DiffusionLoss(net, schedule)
    optim = OptimConfig(warmup_steps=0)
    steps = plan.train_warmup + plan.train_repeats
    engine = DDPEngine(
        loss_module,
        optim,
        TrainConfig(max_steps=max(steps, 2)),
        EngineConfig(precision=precision),
        SimpleNamespace(device=device),
    )
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
            raise RuntimeError(f"{label}: non-finite training loss {result.loss}")

    net.train()
    reset_peak_memory(device)
    timing = timed(step, device, plan.train_warmup, plan.train_repeats, f"{label} training (batch {batch})")
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
    batch: int,
    plan: Plan,
    device: torch.device,
    precision: str,
    label: str,
) -> dict[str, Any]:
    """Time per network evaluation, per decode and (where planned) the whole sampler + decode."""
    from hpc_seaice.config import DiffusionConfig
    from hpc_seaice.diffusion.sampler import VDenoiser, edm_sigmas, sampler_sigma_range
    from hpc_seaice.inference.generate import generate

    diffusion = DiffusionConfig(sampler_steps=SAMPLER_STEPS)
    net.eval()
    denoiser = VDenoiser(net, mask=model_mask)
    noise = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1)).to(device)
    sigma_min, sigma_max = sampler_sigma_range(diffusion)
    sigmas = edm_sigmas(SAMPLER_STEPS, sigma_min, sigma_max, diffusion.sampler_rho).tolist()
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


def measure_vae_encode(
    vae: torch.nn.Module, shape: Sequence[int], batch: int, plan: Plan, device: torch.device, precision: str
) -> dict[str, Any]:
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(2)).to(device)

    @torch.no_grad()
    def encode() -> None:
        with autocast(device, precision):
            vae.encode(x)

    reset_peak_memory(device)
    timing = timed(encode, device, plan.vae_warmup, plan.vae_repeats, "VAE encode")
    return {
        "times_s": timing.times,
        "cpu_share": timing.cpu_share,
        "median_s": timing.median,
        "s_per_sample": timing.median / batch,
        "peak_memory_mb": peak_memory_mb(device),
    }


@dataclass
class Setup:
    """What both spaces share in one run: device, precision, batch, geometry and the VAE config."""

    args: argparse.Namespace
    device: torch.device
    precision: str
    batch: int
    plans: dict[str, Plan]
    presets: dict[str, str]  # data, latent, vae
    shapes: dict[str, tuple[int, ...]]  # data, latent: [C, H, W]
    vae_cfg: Any
    field_mask: torch.Tensor


def run_space(setup: Setup, space: str, vae: torch.nn.Module) -> dict[str, Any]:
    """Build one denoiser and measure its training step and its sampler."""
    from hpc_seaice.inference.generate import DataSpaceDecoder, LatentDecoder
    from hpc_seaice.models.build import build_unet, count_parameters

    device, shape, field_mask = setup.device, setup.shapes[space], setup.field_mask
    plan = setup.plans[space]
    cfg = unet_config(setup.presets[space], setup.args.channels_last)
    torch.manual_seed(0)
    net = build_unet(cfg).to(device)
    if setup.args.compile:
        net.compile()
    model_mask = field_mask if space == "data" else torch.ones(shape[1:], device=device)
    training = measure_training(net, shape, model_mask, setup.batch, plan, device, setup.precision, space)
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

    sampling = measure_sampling(net, shape, model_mask, decode, setup.batch, plan, device, setup.precision, space)
    return {
        "preset": setup.presets[space],
        "config": dataclasses.asdict(cfg),  # the preset as resolved now: presets may change over time
        "shape": list(shape),
        "parameters": count_parameters(net),
        "training": training,
        "sampling": sampling,
    }


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Everything, in one process: FLOPs, the VAE, latent side (small, first), then data side."""
    from hpc_seaice.models.build import build_vae, count_parameters, load_model_preset

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_preset, latent_preset, vae_preset, side = GEOMETRY[args.quick]
    vae_cfg = load_model_preset(vae_preset)
    vae_cfg.channels_last = args.channels_last
    data_shape = (vae_cfg.in_channels, side, side)
    with torch.device("meta"):
        latent_shape = tuple(build_vae(vae_cfg, **vae_stats()).latent_shape(side, side))
    setup = Setup(
        args=args,
        device=device,
        precision=resolve_precision(args.precision, device),
        batch=args.batch_size or (8 if device.type == "cuda" else 1),
        plans=make_plans(device, args.repeats, args.full_sampling),
        presets={"data": data_preset, "latent": latent_preset, "vae": vae_preset},
        shapes={"data": data_shape, "latent": latent_shape},
        vae_cfg=vae_cfg,
        field_mask=ocean_mask(side, device),
    )
    log(
        f"device {device} ({torch.get_num_threads()} threads), precision {setup.precision}, compile {args.compile}, "
        f"batch {setup.batch}; data {data_preset} {'x'.join(map(str, data_shape))} vs latent {latent_preset} "
        f"{'x'.join(map(str, latent_shape))} + {vae_preset}"
    )
    flops = {
        "data": unet_flops(unet_config(data_preset, False), data_shape),
        "latent": unet_flops(unet_config(latent_preset, False), latent_shape),
        "vae": vae_flops(vae_cfg, data_shape),
    }
    log(
        "FLOPs per sample: data forward {:.3g} G, train step {:.3g} G; latent forward {:.3g} G, train step "
        "{:.3g} G; VAE encode {:.3g} G, decode {:.3g} G".format(
            flops["data"]["forward"] / 1e9,
            flops["data"]["train_step"] / 1e9,
            flops["latent"]["forward"] / 1e9,
            flops["latent"]["train_step"] / 1e9,
            flops["vae"]["encode"] / 1e9,
            flops["vae"]["decode"] / 1e9,
        )
    )
    requested = setup.batch
    while True:
        try:
            torch.manual_seed(0)
            vae = build_vae(vae_cfg, **vae_stats()).to(device).eval()
            if args.compile:
                vae.encoder.compile()  # encode/decode are methods, not forward: compile the parts
                vae.decoder.compile()
            encode = measure_vae_encode(vae, data_shape, setup.batch, setup.plans["latent"], device, setup.precision)
            spaces = {space: run_space(setup, space, vae) for space in ("latent", "data")}
            break
        except RuntimeError as exc:
            if device.type != "cuda" or not is_oom(exc) or setup.batch == 1:
                raise
            log(f"out of memory at batch {setup.batch}; retrying all at batch {setup.batch // 2} (both spaces)")
            setup.batch //= 2
            torch.cuda.empty_cache()
    vae_info = {
        "config": dataclasses.asdict(vae_cfg),
        "parameters": count_parameters(vae),
        "flops_per_sample": flops["vae"],
        "encode": encode,
        "decode_s_per_sample": spaces["latent"]["sampling"]["decode_s_per_sample"],
    }
    return summarise(setup, requested, flops, spaces, vae_info)


def summarise(
    setup: Setup, requested: int, flops: dict[str, Any], spaces: dict[str, Any], vae_info: dict[str, Any]
) -> dict[str, Any]:
    """Ratios, achieved FLOP/s and MFU from the raw measurements."""
    args, device, precision, batch = setup.args, setup.device, setup.precision, setup.batch
    peak, peak_text = peak_flops(device, precision)
    for name, space in spaces.items():
        f = flops[name]
        space["flops_per_sample"] = dict(f)
        train = space["training"]
        train["flops_per_step"] = f["train_step"] * batch
        train["achieved_flops"] = train["flops_per_step"] / train["median_step_s"]
        train["mfu"] = train["achieved_flops"] / peak if peak else None
        sampling = space["sampling"]
        sampling["flops_per_eval"] = f["forward"] * batch
        sampling["achieved_flops_eval"] = sampling["flops_per_eval"] / sampling["median_eval_s"]
        sampling["mfu_eval"] = sampling["achieved_flops_eval"] / peak if peak else None
        decode_flops = flops["vae"]["decode"] if name == "latent" else 0
        sampling["flops_per_sample"] = NETWORK_EVALS * f["forward"] + decode_flops
    data, latent = spaces["data"], spaces["latent"]
    ratios = {
        "training_throughput": latent["training"]["samples_per_s"] / data["training"]["samples_per_s"],
        "training_flops": flops["data"]["train_step"] / flops["latent"]["train_step"],
        "sampling_time": data["sampling"]["s_per_sample"] / latent["sampling"]["s_per_sample"],
        "sampling_flops": data["sampling"]["flops_per_sample"] / latent["sampling"]["flops_per_sample"],
        "network_eval_time": data["sampling"]["median_eval_s"] / latent["sampling"]["median_eval_s"],
        "forward_flops": flops["data"]["forward"] / flops["latent"]["forward"],
    }
    ratios["sampling_time_kinds"] = f"data {data['sampling']['kind']} / latent {latent['sampling']['kind']}"
    return {
        "quick": args.quick,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else environment()["device"],
        "threads": torch.get_num_threads(),
        "precision": precision,
        "compile": args.compile,
        "channels_last": args.channels_last,
        "batch_size": batch,
        "batch_size_requested": requested,
        "presets": dict(setup.presets),
        "geometry": {name: list(shape) for name, shape in setup.shapes.items()},
        "sampler": {"heun_steps": SAMPLER_STEPS, "network_evaluations": NETWORK_EVALS},
        "plans": {k: vars(v) for k, v in setup.plans.items()},
        "peak_flops": peak,
        "peak_flops_source": peak_text,
        "vae": vae_info,
        "spaces": spaces,
        "ratios": ratios,
        "targets": {
            "latent_over_data_ratio": TARGET_RATIO,
            "training_met": ratios["training_throughput"] >= TARGET_RATIO,
            "sampling_met": ratios["sampling_time"] >= TARGET_RATIO,
        },
    }


# --- report --------------------------------------------------------------------------------------


def _g(value: float | None, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    if value == 0:
        return f"0{unit}"
    return f"{value:.{digits}g}{unit}"


def _flops(value: float | None) -> str:
    if value is None:
        return "-"
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table_rows(r: dict[str, Any]) -> list[dict[str, str]]:
    d, lat = r["spaces"]["data"], r["spaces"]["latent"]
    dt, lt = d["training"], lat["training"]
    ds, ls = d["sampling"], lat["sampling"]
    ratio = r["ratios"]
    b = r["batch_size"]

    def row(quantity: str, data: str, latent: str, speedup: str, how: str) -> dict[str, str]:
        return {"quantity": quantity, "data space": data, "latent": latent, "latent speed-up": speedup, "how": how}

    rows = [
        row(
            "network",
            f"{d['preset']} {'x'.join(map(str, d['shape']))}",
            f"{lat['preset']} {'x'.join(map(str, lat['shape']))} + {r['presets']['vae']}",
            "",
            f"parameters: {d['parameters'] / 1e6:.1f} M vs {lat['parameters'] / 1e6:.1f} M "
            f"(+ VAE {r['vae']['parameters'] / 1e6:.1f} M)",
        ),
        row(
            "training throughput (samples/s)",
            _g(dt["samples_per_s"]),
            _g(lt["samples_per_s"]),
            _g(ratio["training_throughput"], "x"),
            f"measured: batch {b} / median of {len(dt['step_times_s'])} (data) and {len(lt['step_times_s'])} "
            f"(latent) timed steps after {dt['warmup_steps']} / {lt['warmup_steps']} warm-up",
        ),
        row(
            "training step time (s)",
            _g(dt["median_step_s"]),
            _g(lt["median_step_s"]),
            "",
            "forward + diffusion loss + backward + clip + AdamW (DDPEngine.train_step)",
        ),
        row(
            "FLOPs per training step",
            _flops(dt["flops_per_step"]),
            _flops(lt["flops_per_step"]),
            _g(ratio["training_flops"], "x"),
            "FLOP ratio = limit if both ran equally efficiently (flop_counter)",
        ),
        row(
            "achieved FLOP/s (training)",
            _flops(dt["achieved_flops"]),
            _flops(lt["achieved_flops"]),
            "",
            "counted FLOPs / median step time",
        ),
        row("MFU (training)", _pct(dt["mfu"]), _pct(lt["mfu"]), "", r["peak_flops_source"]),
        row(
            "sampling time per sample (s)",
            _g(ds["s_per_sample"]),
            _g(ls["s_per_sample"]),
            _g(ratio["sampling_time"], "x"),
            f"data: {ds['how']}; latent: {ls['how']} (incl. one VAE decode)",
        ),
        row(
            "  derived check (s per sample)",
            _g(ds["derived_s_per_sample"]),
            _g(ls["derived_s_per_sample"]),
            "",
            ds["derived_formula"],
        ),
        row(
            "network evaluation (s per batch)",
            _g(ds["median_eval_s"]),
            _g(ls["median_eval_s"]),
            _g(ratio["network_eval_time"], "x"),
            f"measured: median of {len(ds['eval_times_s'])} / {len(ls['eval_times_s'])} denoiser calls",
        ),
        row(
            "decode to fields (s per sample)",
            _g(ds["decode_s_per_sample"]),
            _g(ls["decode_s_per_sample"]),
            "",
            "data: un-normalise + clip; latent: one VAE decoder pass + clip",
        ),
        row(
            "FLOPs per generated sample",
            _flops(ds["flops_per_sample"]),
            _flops(ls["flops_per_sample"]),
            _g(ratio["sampling_flops"], "x"),
            f"{NETWORK_EVALS} x forward (+ VAE decode for latent)",
        ),
        row(
            "achieved FLOP/s (sampling eval)",
            _flops(ds["achieved_flops_eval"]),
            _flops(ls["achieved_flops_eval"]),
            "",
            f"MFU {_pct(ds['mfu_eval'])} / {_pct(ls['mfu_eval'])}",
        ),
        row(
            "VAE encode per sample (s)",
            "-",
            _g(r["vae"]["encode"]["s_per_sample"]),
            "",
            f"measured, median of {len(r['vae']['encode']['times_s'])}; saved per training sample by latent "
            f"caching ({_flops(r['vae']['flops_per_sample']['encode'])}FLOP)",
        ),
        row(
            "CPU share of timed calls (train / eval)",
            f"{_pct(dt['cpu_share'])} / {_pct(ds['eval_cpu_share'])}",
            f"{_pct(lt['cpu_share'])} / {_pct(ls['eval_cpu_share'])}",
            "",
            f"process CPU time / (wall x {r['threads']} threads); well below 100% on a CPU means other load "
            f"inflated the timings; CPU measurements below {100 * r['contention']['min_cpu_share']:.0f}% are "
            f"repeated (up to {r['contention']['retries']}x) and the least contended kept",
        ),
        row(
            "peak memory, training (MB)",
            _g(dt["peak_memory_mb"], digits=4),
            _g(lt["peak_memory_mb"], digits=4),
            "",
            "GPU: max allocated in the phase"
            if r["device"].startswith("cuda")
            else "CPU: process peak RSS so far (cumulative; latent measured first)",
        ),
        row(
            "peak memory, sampling (MB)",
            _g(ds["peak_memory_mb"], digits=4),
            _g(ls["peak_memory_mb"], digits=4),
            "",
            "as above",
        ),
    ]
    return rows


def header(r: dict[str, Any]) -> str:
    t = r["targets"]
    g = r["geometry"]
    ratio = r["ratios"]
    load = r.get("load_average", {})
    lines = [
        f"Device: {r['device_name']} ({r['device']}, {r['threads']} threads); precision {r['precision']}; "
        f"torch.compile {'on' if r['compile'] else 'off'}; batch {r['batch_size']} for both spaces"
        + (
            f" (reduced from {r['batch_size_requested']} after out-of-memory)"
            if r["batch_size"] != r["batch_size_requested"]
            else ""
        )
        + ".",
        f"Measured: data space {r['presets']['data']} at {'x'.join(map(str, g['data']))} vs latent "
        f"{r['presets']['latent']} at {'x'.join(map(str, g['latent']))} with {r['presets']['vae']}"
        + (" (QUICK run: demo presets, not the paper geometry)." if r["quick"] else " (paper geometry)."),
        f"Sampler: {SAMPLER_STEPS} Heun steps = {NETWORK_EVALS} network evaluations per sample. 1-minute load "
        f"average {_g(load.get('start'))} at start, {_g(load.get('end'))} at end; run took {r.get('wall_s', 0):.0f} s.",
        f"Latent/data ratio target {TARGET_RATIO:g}x: training throughput {ratio['training_throughput']:.1f}x "
        f"({'met' if t['training_met'] else 'missed'}; FLOP ratio {ratio['training_flops']:.1f}x), sampling time "
        f"per sample {ratio['sampling_time']:.1f}x ({'met' if t['sampling_met'] else 'missed'}; FLOP ratio "
        f"{ratio['sampling_flops']:.1f}x; {ratio['sampling_time_kinds']}).",
    ]
    return "\n".join(lines)


NOTES = (
    "FLOPs are counted by torch.utils.flop_counter on the meta device (convolutions, matmuls, attention; not "
    "norms, activations or the optimizer), so achieved FLOP/s understates the work of element-wise-heavy "
    "layers; the backward of grouped (depthwise) convolutions is counted per group, where torch's own formula "
    "counts it as dense. 'derived' figures are computed from measured parts by the formula given; everything else is "
    "measured in this run. The latent sampling time includes one VAE decoder pass per sample (VAE.decode)."
)


def write_report(
    name: str,
    rows: list[dict[str, Any]],
    *,
    settings: dict[str, Any],
    summary: dict[str, Any],
    header_text: str,
    notes: str,
    out_dir: Path,
) -> tuple[Path, Path]:
    """``<name>.json`` (environment, settings, table rows, full summary, notes) and ``<name>.md``.

    Same record layout as ``benchmarks.common.write_results`` plus a ``summary`` of the raw
    measurements, and a header paragraph in the markdown saying what was measured.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    record = {
        "name": name,
        "environment": env,
        "settings": settings,
        "results": rows,
        "summary": summary,
        "notes": notes,
    }
    json_path = out_dir / f"{name}.json"
    md_path = out_dir / f"{name}.md"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    tmp.replace(json_path)
    md = [
        f"# {name}",
        "",
        header_text,
        "",
        markdown_table(rows),
        "",
        notes,
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()),
        "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()),
        "",
    ]
    md_path.write_text("\n".join(md))
    return json_path, md_path


def load_average() -> float | None:
    """1-minute load average: other work on the machine skews CPU timings, so it is recorded."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def default_out_dir(quick: bool) -> Path:
    return results_dir() / "quick" if quick else results_dir()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.speed", description="Latent vs data-space diffusion: training and sampling speed"
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16"), help="auto: bf16 autocast on GPU, fp32 on CPU"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Nets and the VAE encoder/decoder")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for all networks")
    p.add_argument("--batch-size", type=int, default=0, help="samples per step, both spaces (default: GPU 8, CPU 1)")
    p.add_argument("--repeats", type=int, default=0, help="timed repeats per measurement (default by device)")
    p.add_argument(
        "--full-sampling",
        action="store_true",
        help="on CPU, also time the data-space sampler end to end (39 evaluations: slow)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--min-cpu-share",
        type=float,
        default=CONTENTION["min_cpu_share"],
        help="CPU: repeat a measurement whose process CPU share was below this (other load)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=CONTENTION["retries"],
        help="CPU: at most this many repeats of a contended measurement (least contended kept)",
    )
    p.add_argument("--quick", action="store_true", help="demo presets at 5x128x128 / 16x16x16 (CI smoke test)")
    p.add_argument("--name", default="speed", help="result file name (default speed)")
    p.add_argument("--out", default="", help="results folder (default benchmarks/results, or .../quick)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG bar chart")
    args = p.parse_args(argv)
    if args.batch_size < 0 or args.repeats < 0 or args.threads < 0 or args.retries < 0:
        p.error("--batch-size, --repeats, --threads and --retries must be >= 0")
    if not 0.0 <= args.min_cpu_share <= 1.0:
        p.error("--min-cpu-share must be in [0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    CONTENTION.update(min_cpu_share=args.min_cpu_share, retries=args.retries)
    load_start = load_average()
    started = time.perf_counter()
    result = measure(args)
    result["wall_s"] = time.perf_counter() - started
    result["load_average"] = {"start": load_start, "end": load_average()}
    result["contention"] = dict(CONTENTION)
    out_dir = Path(args.out) if args.out else default_out_dir(args.quick)
    rows = table_rows(result)
    settings = {
        "quick": args.quick,
        "device": result["device"],
        "precision": result["precision"],
        "compile": args.compile,
        "channels_last": args.channels_last,
        "batch_size": result["batch_size"],
        "threads": result["threads"],
        "presets": result["presets"],
        "geometry": result["geometry"],
        "heun_steps": SAMPLER_STEPS,
        "network_evaluations": NETWORK_EVALS,
        "repeats": args.repeats or "by device",
        "full_sampling": args.full_sampling,
        "contention": dict(CONTENTION),
        "load_average_1min": result["load_average"],
    }
    text = header(result)
    json_path, md_path = write_report(
        args.name, rows, settings=settings, summary=result, header_text=text, notes=NOTES, out_dir=out_dir
    )
    print()
    print(text)
    print()
    print(markdown_table(rows))
    print(f"\nwritten {json_path} and {md_path} in {result['wall_s']:.0f} s")
    if not args.no_plot:
        from benchmarks.plots import plot_speed_ratios

        png = plot_speed_ratios(
            json_path, out_dir / ("speed_ratios.png" if args.name == "speed" else f"{args.name}_ratios.png")
        )
        print(f"written {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
