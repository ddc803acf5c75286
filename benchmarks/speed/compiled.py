"""Compiled against eager sampling calls alone: ``python -m benchmarks.speed --compile-only``.

Why: compiling takes minutes, so ``benchmarks/gpu.sh`` runs the comparison as its own step after
the eager run (a timeout there leaves the eager results whole). That step needs none of the eager
run's training steps, sampler timings, VAE encode or batch sweep: here only the networks are
built (the same presets, seed, batch and precision as the full run) and each compiled call is
timed beside its eager self, on the same inputs and in the same process
(:func:`benchmarks.speed.sweep.compare_compiled`), with their largest output difference; so the
speed-up stays a side-by-side ratio of one run.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from benchmarks.common import environment, load_average, out_dir_for, print_report, write_report
from benchmarks.speed.report import COMPILED_TITLE, compiled_rows
from benchmarks.speed.setup import Setup, build_bench_vae, build_denoiser, halving_batch_on_oom, make_setup
from benchmarks.speed.sweep import compiled_sampling
from benchmarks.speed.timing import CONTENTION, log

NOTES = (
    "Each compiled call is timed against the same call run eagerly in this process, on the same inputs, after "
    "one warm-up each (the first compiled call compiles: its time is the compile time). Training, sampling and "
    "batch-sweep figures are not measured here: they are in the eager run (python -m benchmarks.speed)."
)


def compared_spaces(setup: Setup) -> tuple[str, ...]:
    """The spaces whose sampling calls are compiled: the latent one everywhere, data space on a GPU only
    (on a CPU its compilation alone takes many minutes)."""
    if not setup.compare_compiled:
        return ()
    return ("latent", "data") if setup.device.type == "cuda" else ("latent",)


def compiled_calls(setup: Setup, space: str, denoiser: torch.nn.Module, vae: torch.nn.Module) -> list[dict[str, Any]]:
    """Compiled against eager: one denoiser call of ``space`` and, for latents, one VAE decoder pass."""
    if space not in compared_spaces(setup):
        return []
    return compiled_sampling(
        space,
        denoiser,
        vae if space == "latent" else None,
        setup.field_mask,
        setup.shapes[space],
        setup.shapes["latent"],
        setup.batch,
        setup.device,
        setup.precision,
        setup.args.repeats or 3,
        backend=getattr(setup.args, "compile_backend", "inductor"),
    )


def measure_compiled(args: argparse.Namespace) -> dict[str, Any]:
    """Build the VAE and the compared denoisers, and time each compiled call beside its eager one."""
    from hpc_seaice.diffusion.sampler import VDenoiser

    setup = make_setup(args)
    device = setup.device
    log(f"device {device}, precision {setup.precision}, batch {setup.batch}: compiled against eager calls only")
    requested = setup.batch

    def all_calls() -> list[dict[str, Any]]:
        vae = build_bench_vae(setup)
        calls = []
        for space in compared_spaces(setup):
            _, net, mask = build_denoiser(setup, space)
            calls += compiled_calls(setup, space, VDenoiser(net, mask=mask).eval(), vae)
            del net
        return calls

    compiled = halving_batch_on_oom(setup, all_calls)
    return {
        "quick": args.quick,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else environment()["device"],
        "threads": torch.get_num_threads(),
        "precision": setup.precision,
        "compile_backend": getattr(args, "compile_backend", "inductor"),
        "batch_size": setup.batch,
        "batch_size_requested": requested,
        "presets": dict(setup.presets),
        "geometry": {name: list(shape) for name, shape in setup.shapes.items()},
        "compiled": compiled,
    }


def header(r: dict[str, Any]) -> str:
    g, presets = r["geometry"], r["presets"]
    reduced = r["batch_size"] != r["batch_size_requested"]
    return "\n".join(
        [
            f"Device: {r['device_name']} ({r['device']}, {r['threads']} threads); precision {r['precision']}; "
            f"batch {r['batch_size']}"
            + (f" (reduced from {r['batch_size_requested']} after out-of-memory)" if reduced else "")
            + ".",
            f"{COMPILED_TITLE}, both timed in this run: data space {presets['data']} at "
            f"{'x'.join(map(str, g['data']))}, latent {presets['latent']} at {'x'.join(map(str, g['latent']))} "
            f"with {presets['vae']}"
            + (" (QUICK run: demo presets)." if r["quick"] else " (paper geometry).")
            + f" Run took {r.get('wall_s', 0):.0f} s.",
        ]
    )


def run_compile_only(args: argparse.Namespace) -> int:
    """``--compile-only``: measure, then write ``<name>.json`` / ``<name>.md`` with the compiled rows."""
    load_start = load_average()
    started = time.perf_counter()
    result = measure_compiled(args)
    result["wall_s"] = time.perf_counter() - started
    result["load_average"] = {"start": load_start, "end": load_average()}
    rows = compiled_rows(result)
    settings = {
        "compile_only": True,
        "quick": args.quick,
        "device": result["device"],
        "precision": result["precision"],
        "channels_last": args.channels_last,
        "batch_size": result["batch_size"],
        "threads": result["threads"],
        "presets": result["presets"],
        "geometry": result["geometry"],
        "repeats": args.repeats or 3,
        "contention": dict(CONTENTION),
        "load_average_1min": result["load_average"],
    }
    text = header(result)
    json_path, md_path = write_report(
        args.name,
        rows,
        settings=settings,
        summary=result,
        header_text=text,
        notes=NOTES,
        out_dir=out_dir_for(args.out, args.quick),
    )
    print_report(text, rows)
    print(f"\nwritten {json_path} and {md_path} in {result['wall_s']:.0f} s")
    return 0
