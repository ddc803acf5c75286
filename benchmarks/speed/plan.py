"""What the speed benchmark measures, where and how often: geometry, sampler, repeat plans."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hpc_seaice.diffusion.sampler import DEFAULT_STEPS

SAMPLER_STEPS = DEFAULT_STEPS  # the default sampler (diffusion.sampler_steps) on both sides
NETWORK_EVALS = 2 * SAMPLER_STEPS - 1  # Heun: two evaluations per step, one for the last (Euler) step
TARGET_RATIO = 25.0  # training throughput, latent / data space
# Sampling end to end (VAE decode included): 0.9 of the shipped denoisers' 25.1x per-call FLOP ratio.
SAMPLING_TARGET_RATIO = 22.0

GEOMETRY = {
    # quick: (data preset, latent preset, vae preset, grid side)
    False: ("paper-data", "paper-latent", "paper-vae", 512),
    True: ("demo-data", "demo-latent", "demo-vae", 128),
    "toy": ("tiny-unet", "tiny-latent", "tiny-vae", 32),  # --toy: tests the scripts (gpu.sh --dry), times nothing
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
