"""Print parameter counts and forward FLOPs of model presets.

    python -m hpc_seaice.models.describe paper-data paper-latent paper-vae
    python -m hpc_seaice.models.describe demo-data:256      # NAME[:GRID] overrides the input side

FLOPs are counted at batch 1 on the meta device (nothing is allocated), with
``torch.utils.flop_counter``; for the VAE the encoder and decoder are reported separately, with
the decoder's architecture (``vae.decoder_arch``: conv or light).
"""

from __future__ import annotations

import argparse
import sys

import torch

from hpc_seaice.command import run_command
from hpc_seaice.config import UNetConfig
from hpc_seaice.errors import UserError
from hpc_seaice.models.build import count_parameters, forward_flops, load_model_preset
from hpc_seaice.models.unet import UNet
from hpc_seaice.models.vae import VAE

# Input side the presets are made for (data grid for data-space nets and VAEs, latent grid else).
DEFAULT_GRID = {
    "paper-data": 512,
    "paper-latent": 64,
    "paper-vae": 512,
    "demo-data": 128,
    "demo-latent": 16,
    "demo-vae": 128,
    "tiny-unet": 32,
    "tiny-vae": 32,
}


def describe(name: str, grid: int | None = None) -> dict[str, float | int | str]:
    """Parameters and forward FLOPs (batch 1) of preset ``name`` on a ``grid`` x ``grid`` input."""
    cfg = load_model_preset(name)
    side = grid or DEFAULT_GRID.get(name)
    if side is None:
        raise UserError(f"model preset {name!r}: give the input side as {name}:GRID")
    with torch.device("meta"):
        if isinstance(cfg, UNetConfig):
            model = UNet(cfg)
            x = torch.zeros(1, cfg.in_channels, side, side)
            flops = forward_flops(model, (x, torch.zeros(1)))
            return {
                "name": name,
                "kind": "unet",
                "input": f"{cfg.in_channels}x{side}x{side}",
                "params": count_parameters(model),
                "gflops": flops / 1e9,
            }
        n = len(cfg.channel_mult) - 1
        model = VAE(cfg, data_mean=[0.0] * cfg.in_channels, data_std=[1.0] * cfg.in_channels,
                    lower=[-1e30] * cfg.in_channels, upper=[1e30] * cfg.in_channels)  # fmt: skip
        x = torch.zeros(1, cfg.in_channels, side, side)
        z = torch.zeros(1, cfg.latent_channels, side >> n, side >> n)
        enc = forward_flops(model, (x,), fn="encode")
        dec = forward_flops(model, (z,), fn="decode_params")
        return {
            "name": name,
            "kind": "vae",
            "input": f"{cfg.in_channels}x{side}x{side} -> {cfg.latent_channels}x{side >> n}x{side >> n}",
            "params": count_parameters(model),
            "gflops": (enc + dec) / 1e9,
            "encoder_gflops": enc / 1e9,
            "decoder_gflops": dec / 1e9,
            "decoder_arch": cfg.decoder_arch,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpc_seaice.models.describe", description=__doc__.split("\n")[0])
    parser.add_argument("presets", nargs="+", help="preset names, optionally NAME:GRID")
    args = parser.parse_args(argv)
    return run_command("describe", lambda: print_presets(args.presets))


def _describe_item(item: str) -> dict[str, float | int | str]:
    name, _, grid = item.partition(":")
    if grid and not grid.isdigit():
        raise UserError(f"{item}: the input side after ':' must be a whole number")
    try:
        return describe(name, int(grid) if grid else None)
    except ValueError as exc:  # a grid the network cannot take (e.g. not divisible by its down-sampling)
        raise UserError(f"{item}: {exc}") from None


def print_presets(items: list[str]) -> None:
    """One line per preset (parameters, forward GFLOPs), then the paper's FLOP ratio if both are listed."""
    rows = [_describe_item(item) for item in items]
    for r in rows:
        extra = ""
        if r["kind"] == "vae":
            extra = f"  (encoder {r['encoder_gflops']:.1f}, {r['decoder_arch']} decoder {r['decoder_gflops']:.1f})"
        print(f"{r['name']:<14} {r['kind']:<5} {r['input']:<24} {r['params'] / 1e6:8.2f} M params "
              f"{r['gflops']:9.2f} GFLOPs forward{extra}")  # fmt: skip
    unets = {r["name"]: r for r in rows if r["kind"] == "unet"}
    if "paper-data" in unets and "paper-latent" in unets:
        ratio = unets["paper-data"]["gflops"] / unets["paper-latent"]["gflops"]
        print(f"FLOP ratio paper-data / paper-latent: {ratio:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
