"""Ratios, achieved FLOP/s, MFU and efficiency figures of one speed run, from its raw measurements."""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.common import environment
from benchmarks.speed.latent_paths import path_ratios
from benchmarks.speed.plan import NETWORK_EVALS, SAMPLER_STEPS, SAMPLING_TARGET_RATIO, TARGET_RATIO
from benchmarks.speed.sweep import sweep_ratios
from benchmarks.speed.timing import peak_flops


def summarise(
    setup: Any,
    requested: int,
    flops: dict[str, Any],
    spaces: dict[str, Any],
    vae_info: dict[str, Any],
    matmul: dict[str, Any],
) -> dict[str, Any]:
    """Ratios, achieved FLOP/s, MFU and the fraction of the measured matmul rate from the raw measurements."""
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
        train["matmul_fraction"] = train["achieved_flops"] / matmul["flops_per_s"]
        sampling["matmul_fraction_eval"] = sampling["achieved_flops_eval"] / matmul["flops_per_s"]
        for row in space["sweep"]:
            row["matmul_fraction"] = row["achieved_flops"] / matmul["flops_per_s"]
            row["mfu"] = row["achieved_flops"] / peak if peak else None
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
    if "paths" in latent:
        ratios |= path_ratios(spaces, latent["paths"])
    ratios["sampling_time_kinds"] = f"data {data['sampling']['kind']} / latent {latent['sampling']['kind']}"
    ratios["sampling_over_forward_flops"] = ratios["sampling_time"] / ratios["forward_flops"]
    latent_sampling = latent["sampling"]
    latent_sampling["decoder_share"] = latent_sampling["median_decode_s"] / (latent_sampling["s_per_sample"] * batch)
    sweep_rows = latent["sweep"] + data["sweep"]
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
        "matmul": matmul,
        "sweep": sweep_rows,
        "sweep_ratios": sweep_ratios(sweep_rows),
        "compiled": latent["compiled"] + data["compiled"],
        "targets": {
            "latent_over_data_ratio": TARGET_RATIO,
            "sampling_ratio": SAMPLING_TARGET_RATIO,
            "training_met": ratios["training_throughput"] >= TARGET_RATIO,
            "sampling_met": ratios["sampling_time"] >= SAMPLING_TARGET_RATIO,
            "decoder_share_max": 0.10,
            "decoder_share_met": latent_sampling["decoder_share"] <= 0.10,
        },
    }
