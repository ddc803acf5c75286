"""Sampling at several batch sizes, compiled against eager, and the machine's matmul peak.

Why: at batch 1 a 16 x 64 x 64 denoiser uses a machine worse than a 5 x 512 x 512 one (small
tensors, more overhead per FLOP), so the per-call time ratio falls short of the FLOP ratio.
The sweep times one network call and one decode at each batch (same batch on both sides), so
a user sees at which batch the latent network stops wasting the machine, and what share of a
latent sample the decoder takes. The dense matrix-multiply rate measured in the same run is the
practical peak that gives CPU runs an efficiency figure (GPU runs also keep the vendor peak).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from benchmarks.speed.plan import NETWORK_EVALS, SAMPLER_STEPS
from benchmarks.speed.timing import autocast, log, synchronize, timed

SWEEP_BATCHES = (1, 4, 16)


def measure_matmul_flops(device: torch.device, precision: str, repeats: int = 5, n: int = 0) -> dict[str, Any]:
    """FLOP/s of a dense square matmul in the run's precision: the practical peak of this machine.

    ``n``: the matrix side (default 8192 on a GPU, 2048 on a CPU; toy runs pass a small one, as
    bf16 matmuls of 2048 take seconds each on CPUs without bf16 units)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = n or (8192 if device.type == "cuda" else 2048)
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    timing = timed(lambda: torch.mm(a, b), device, 2, repeats, f"dense matmul {n}^3 {dtype}")
    flop = 2 * n**3
    return {
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "times_s": timing.times,
        "cpu_share": timing.cpu_share,
        "flops_per_s": flop / min(timing.times),
        "median_flops_per_s": flop / timing.median,
        "how": f"2 n^3 / fastest of {len(timing.times)} torch.mm calls, n = {n}, after 2 warm-up calls",
    }


def sweep_repeats(device: torch.device, space: str, batch: int, repeats: int) -> tuple[int, int]:
    """(warm-up, timed) calls per sweep point: CPU data-space calls at batch 16 take tens of seconds."""
    if device.type == "cuda":
        return 2, repeats or 10
    if space == "data":
        return (1 if batch == 1 else 0), 1 if batch > 1 else (repeats or 2)
    return 1, repeats or 3


def sweep_space(
    space: str,
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    decode: Callable[[torch.Tensor], Any],
    shape: Sequence[int],
    forward_flops: int,
    decode_flops: int,
    batches: Sequence[int],
    device: torch.device,
    precision: str,
    repeats: int,
) -> list[dict[str, Any]]:
    """One network call and one decode at each batch size: time per call, per sample, per FLOP."""
    rows = []
    for batch in batches:
        noise = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(4)).to(device)
        sigma = torch.full((batch,), 2.0, device=device)

        @torch.no_grad()
        def call(_x: torch.Tensor = noise, _s: torch.Tensor = sigma) -> None:
            with autocast(device, precision):
                denoiser(_x, _s)

        @torch.no_grad()
        def dec(_x: torch.Tensor = noise) -> None:
            with autocast(device, precision):
                decode(_x)

        warm, rep = sweep_repeats(device, space, batch, repeats)
        t_call = timed(call, device, warm, rep, f"{space} sweep: network call at batch {batch}")
        t_dec = timed(dec, device, 1 if warm else 0, max(1, min(rep, 3)), f"{space} sweep: decode at batch {batch}")
        per_sample = (NETWORK_EVALS * t_call.median + t_dec.median) / batch
        rows.append(
            {
                "space": space,
                "batch": batch,
                "call_s": t_call.median,
                "call_times_s": t_call.times,
                "call_cpu_share": t_call.cpu_share,
                "decode_s": t_dec.median,
                "decode_times_s": t_dec.times,
                "flops_per_call": forward_flops * batch,
                "achieved_flops": forward_flops * batch / t_call.median,
                "decode_flops": decode_flops * batch,
                "decode_achieved_flops": decode_flops * batch / t_dec.median if decode_flops else None,
                "s_per_sample": per_sample,
                "decoder_share": t_dec.median / (NETWORK_EVALS * t_call.median + t_dec.median),
                "warmup": warm,
            }
        )
        del noise
    return rows


def sweep_ratios(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per batch: data / latent sampling time per sample (derived) and per network call."""
    by = {(r["space"], r["batch"]): r for r in rows}
    out = {}
    for (space, batch), lat in by.items():
        data = by.get(("data", batch))
        if space == "latent" and data is not None:
            out[batch] = {
                "sampling_time": data["s_per_sample"] / lat["s_per_sample"],
                "network_call_time": data["call_s"] / lat["call_s"],
            }
    return out


def compare_compiled(
    name: str,
    eager: Callable[..., torch.Tensor],
    compiled: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    device: torch.device,
    precision: str,
    repeats: int,
) -> dict[str, Any]:
    """Time ``eager`` and ``compiled`` on the same inputs, and their largest output difference."""

    @torch.no_grad()
    def run(fn: Callable[..., torch.Tensor]) -> torch.Tensor:
        with autocast(device, precision):
            return fn(*inputs)

    t0 = time.perf_counter()
    first = run(compiled)  # compiles
    synchronize(device)
    compile_s = time.perf_counter() - t0
    log(f"{name}: compiled in {compile_s:.1f} s")
    reference = run(eager)
    diff = (first.float() - reference.float()).abs().max().item()
    scale = reference.float().abs().max().item()
    t_eager = timed(lambda: run(eager), device, 1, repeats, f"{name}: eager")
    t_comp = timed(lambda: run(compiled), device, 1, repeats, f"{name}: compiled")
    return {
        "what": name,
        "batch": int(inputs[0].shape[0]),
        "eager_s": t_eager.median,
        "compiled_s": t_comp.median,
        "speedup": t_eager.median / t_comp.median,
        "compile_s": compile_s,
        "max_abs_diff": diff,
        "max_abs_output": scale,
        "eager_times_s": t_eager.times,
        "compiled_times_s": t_comp.times,
    }


def compiled_sampling(
    space: str,
    denoiser: torch.nn.Module,
    vae: torch.nn.Module | None,
    field_mask: torch.Tensor,
    shape: Sequence[int],
    latent_shape: Sequence[int],
    batch: int,
    device: torch.device,
    precision: str,
    repeats: int,
    backend: str = "inductor",
) -> list[dict[str, Any]]:
    """Compiled (``compile_for_sampling``) vs eager: one denoiser call and, with a ``vae``, one decode.

    The decode is the sampler's own (``LatentDecoder``, eager or ``compile=True``): it hands the
    decoder network the land mask through ``decode_params``, without which a decoder with a mask
    channel cannot run; the network pass is what gets compiled.
    """
    from hpc_seaice.inference.generate import LatentDecoder, compile_for_sampling

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(batch, *shape, generator=gen).to(device)
    sigma = torch.full((batch,), 2.0, device=device)
    out = [
        compare_compiled(
            f"{space} denoiser call ({SAMPLER_STEPS}-step sampler)",
            denoiser,
            compile_for_sampling(denoiser, device, backend),
            (x, sigma),
            device,
            precision,
            repeats,
        )
    ]
    if vae is not None:
        z = torch.randn(batch, *latent_shape, generator=gen).to(device)
        stats = (torch.zeros(latent_shape[0]), torch.ones(latent_shape[0]))  # irrelevant to the cost
        eager = LatentDecoder(vae, *stats, field_mask, device)
        compiled = LatentDecoder(vae, *stats, field_mask, device, compile=True, compile_backend=backend)
        out.append(
            compare_compiled(
                "VAE decoder pass",
                lambda latents: eager(latents)[0],
                lambda latents: compiled(latents)[0],
                (z,),
                device,
                precision,
                repeats,
            )
        )
    return out
