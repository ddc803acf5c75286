"""What one speed run shares: device, precision, batch, geometry, FLOP counts and the networks it builds.

Both the full measurement (``benchmarks.speed.measure``) and the compiled-only one
(``benchmarks.speed.compiled``) start from :func:`make_setup` and build their networks here, so the
two time the same networks at the same geometry and batch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.speed.flops import ocean_mask, unet_config, unet_flops, vae_flops, vae_stats
from benchmarks.speed.plan import GEOMETRY, Plan, make_plans
from benchmarks.speed.timing import log, resolve_device, resolve_precision


@dataclass(frozen=True)
class Case:
    """What a timed phase runs under; built per space from ``Setup.case`` so an out-of-memory retry
    re-reads the halved batch."""

    batch: int
    plan: Plan
    device: torch.device
    precision: str
    label: str  # prefix of the log lines: the space, or "VAE"


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
    flops: dict[str, dict[str, int]]  # data, latent, vae: FLOPs per sample (meta-device counts)
    sweep: tuple[int, ...]  # batch sizes of the sampling sweep (empty: none)
    compare_compiled: bool  # time compiled vs eager sampling calls (latent; data too on GPU)

    def case(self, space: str) -> Case:
        """The batch, plan, device and precision of one space's measurements."""
        return Case(self.batch, self.plans[space], self.device, self.precision, space)


def build_denoiser(setup: Setup, space: str) -> tuple[Any, torch.nn.Module, torch.Tensor]:
    """One space's U-Net config, the network (seed 0, on the device) and the mask it samples under."""
    from hpc_seaice.models.build import build_unet

    cfg = unet_config(setup.presets[space], setup.args.channels_last)
    torch.manual_seed(0)
    net = build_unet(cfg).to(setup.device)
    if setup.args.compile:
        net.compile()
    mask = setup.field_mask if space == "data" else torch.ones(setup.shapes[space][1:], device=setup.device)
    return cfg, net, mask


def build_bench_vae(setup: Setup) -> torch.nn.Module:
    """The VAE both spaces share (seed 0, eval mode); with ``--compile`` its encoder and decoder compiled."""
    from hpc_seaice.models.build import build_vae

    torch.manual_seed(0)
    vae = build_vae(setup.vae_cfg, **vae_stats()).to(setup.device).eval()
    if setup.args.compile:
        vae.encoder.compile()  # encode/decode are methods, not forward: compile the parts
        vae.decoder.compile()
    return vae


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def make_setup(args: argparse.Namespace) -> Setup:
    """Device, precision, batch, geometry, plans and FLOP counts of one run, from its arguments."""
    from hpc_seaice.models.build import build_vae, load_model_preset

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_preset, latent_preset, vae_preset, side = GEOMETRY["toy" if getattr(args, "toy", False) else args.quick]
    vae_cfg = load_model_preset(vae_preset)
    vae_cfg.channels_last = args.channels_last
    data_shape = (vae_cfg.in_channels, side, side)
    with torch.device("meta"):
        latent_shape = tuple(build_vae(vae_cfg, **vae_stats()).latent_shape(side, side))
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
    return Setup(
        args=args,
        device=device,
        precision=resolve_precision(args.precision, device),
        batch=args.batch_size or (8 if device.type == "cuda" else 1),
        plans=make_plans(device, args.repeats, args.full_sampling),
        presets={"data": data_preset, "latent": latent_preset, "vae": vae_preset},
        shapes={"data": data_shape, "latent": latent_shape},
        vae_cfg=vae_cfg,
        field_mask=ocean_mask(side, device),
        flops=flops,
        sweep=tuple(args.sweep),
        compare_compiled=args.compare_compiled and not args.compile,
    )


def halving_batch_on_oom(setup: Setup, work: Callable[[], Any]) -> Any:
    """``work()``, run again at half the batch (both spaces) while a GPU runs out of memory."""
    while True:
        try:
            return work()
        except RuntimeError as exc:
            if setup.device.type != "cuda" or not is_oom(exc) or setup.batch == 1:
                raise
            log(f"out of memory at batch {setup.batch}; retrying all at batch {setup.batch // 2} (both spaces)")
            setup.batch //= 2
            torch.cuda.empty_cache()
