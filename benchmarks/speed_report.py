"""The speed benchmark's report: table rows, header paragraph and notes from one result dict."""

from __future__ import annotations

from typing import Any

from benchmarks.common import markdown_table
from benchmarks.speed_plan import NETWORK_EVALS, SAMPLER_STEPS


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
            "fraction of measured matmul FLOP/s (training / eval)",
            f"{_pct(dt['matmul_fraction'])} / {_pct(ds['matmul_fraction_eval'])}",
            f"{_pct(lt['matmul_fraction'])} / {_pct(ls['matmul_fraction_eval'])}",
            "",
            f"achieved FLOP/s / {_flops(r['matmul']['flops_per_s'])}FLOP/s of a dense matmul in this run",
        ),
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
            "decoder share of a sample's time",
            "-",
            _pct(ls["decoder_share"]),
            "",
            "median decode / (sampling time per sample x batch)",
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
        f"Latent/data ratios: training throughput {ratio['training_throughput']:.1f}x (target "
        f"{t['latent_over_data_ratio']:g}x: {'met' if t['training_met'] else 'missed'}; FLOP ratio "
        f"{ratio['training_flops']:.1f}x), sampling time per sample {ratio['sampling_time']:.1f}x (target "
        f"{t['sampling_ratio']:g}x: {'met' if t['sampling_met'] else 'missed'}; FLOP ratio "
        f"{ratio['sampling_flops']:.1f}x, {ratio['sampling_over_forward_flops']:.2f} of the per-call FLOP ratio "
        f"{ratio['forward_flops']:.1f}x; {ratio['sampling_time_kinds']}).",
        f"VAE decoder share of a latent sample's time: {_pct(r['spaces']['latent']['sampling']['decoder_share'])} "
        f"(target <= {100 * t['decoder_share_max']:.0f}%: {'met' if t['decoder_share_met'] else 'missed'}). "
        f"Measured dense matmul: {_flops(r['matmul']['flops_per_s'])}FLOP/s ({r['matmul']['dtype']}, "
        f"{r['matmul']['how']}).",
    ]
    return "\n".join(lines)


NOTES = (
    "FLOPs are counted by torch.utils.flop_counter on the meta device (convolutions, matmuls, attention; not "
    "norms, activations or the optimizer), so achieved FLOP/s understates the work of element-wise-heavy "
    "layers; the backward of grouped (depthwise) convolutions is counted per group, where torch's own formula "
    "counts it as dense. 'derived' figures are computed from measured parts by the formula given; everything else is "
    "measured in this run. The latent sampling time includes one VAE decoder pass per sample (VAE.decode)."
)


def sweep_table(r: dict[str, Any]) -> str:
    """Markdown: per space and batch, time per call against its FLOPs; then compiled vs eager."""
    rows = []
    for w in r.get("sweep", []):
        ratio = r["sweep_ratios"].get(w["batch"]) or r["sweep_ratios"].get(str(w["batch"])) or {}
        rows.append(
            {
                "space": w["space"],
                "batch": w["batch"],
                "network call (s)": _g(w["call_s"]),
                "GFLOP per call": f"{w['flops_per_call'] / 1e9:.1f}",
                "achieved FLOP/s": _flops(w["achieved_flops"]),
                "of matmul peak": _pct(w["matmul_fraction"]),
                "decode (s)": _g(w["decode_s"]),
                "decoder share": _pct(w["decoder_share"]) if w["space"] == "latent" else "-",
                "s per sample (derived)": _g(w["s_per_sample"]),
                "data / latent per sample": _g(ratio.get("sampling_time"), "x") if w["space"] == "latent" else "",
            }
        )
    parts = []
    if rows:
        parts += [
            f"Batch sweep (same batch on both sides; s per sample = ({NETWORK_EVALS} x call + decode) / batch):",
            "",
            markdown_table(rows),
        ]
    comp = [
        {
            "call": c["what"],
            "batch": c["batch"],
            "eager (s)": _g(c["eager_s"]),
            "compiled (s)": _g(c["compiled_s"]),
            "speed-up": _g(c["speedup"], "x"),
            "compile time (s)": f"{c['compile_s']:.0f}",
            "max |compiled - eager|": f"{c['max_abs_diff']:.2g} (outputs up to {c['max_abs_output']:.2g})",
        }
        for c in r.get("compiled", [])
    ]
    if comp:
        parts += ["", "torch.compile (hpc_seaice.inference.generate.compile_for_sampling) against eager:", ""]
        parts.append(markdown_table(comp))
    return "\n".join(parts)
