"""Efficiencies and tables of ``benchmarks.scaling`` (torchrun on one machine) from its run results."""

from __future__ import annotations

from typing import Any

from benchmarks.scaling_spec import DATA_WAIT_TARGET, WEAK_TARGET, RunSpec


def efficiencies(results: dict[str, dict[str, Any]], device: str) -> dict[str, Any]:
    """Weak and strong scaling efficiencies and engine ratios from the runs that succeeded."""

    def thr(name: str) -> float | None:
        r = results.get(name)
        return r.get("samples_per_s") if r and "error" not in r else None

    out: dict[str, Any] = {}
    if device == "cuda":
        ddp, zero1 = thr("1gpu-ddp"), thr("1gpu-zero1")
        out["deepspeed_zero1_over_ddp_1gpu"] = zero1 / ddp if ddp and zero1 else None
        return out
    one, two = thr("1r-b1x-t1"), thr("2r-ddp")
    out["weak_efficiency"] = two / (2 * one) if one and two else None
    one_b, one_b_t2 = thr("1r-b2x-t1"), thr("1r-b2x-t2")
    out["strong_speedup_vs_1rank_1thread"] = two / one_b if two and one_b else None
    out["strong_efficiency"] = two / (2 * one_b) if two and one_b else None
    out["two_ranks_over_one_rank_two_threads"] = two / one_b_t2 if two and one_b_t2 else None
    for stage in (1, 2):
        z = thr(f"2r-zero{stage}")
        out[f"deepspeed_zero{stage}_over_ddp"] = z / two if z and two else None
    by_batch: dict[int, float] = {}
    if one and two:
        by_batch[RunSpec(**results["1r-b1x-t1"]["spec"]).per_rank_batch] = two / (2 * one)
    for name, r in results.items():
        if name.startswith("weak-pb") and name.endswith("-1r"):
            pair = (thr(name), thr(name[:-3] + "-2r"))
            if pair[0] and pair[1]:
                by_batch[RunSpec(**r["spec"]).per_rank_batch] = pair[1] / (2 * pair[0])
    out["weak_efficiency_by_per_rank_batch"] = dict(sorted(by_batch.items()))
    waits = [r["data_wait_fraction"] for r in results.values() if "data_wait_fraction" in r]
    out["max_median_data_wait_fraction"] = max(waits) if waits else None
    return out


def table_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, r in results.items():
        spec = RunSpec(**r["spec"])
        rows.append(
            {
                "run": name,
                "ranks x threads": f"{spec.ranks} x {spec.threads}",
                "engine": spec.engine_label,
                "global batch": spec.global_batch,
                "per-rank batch": spec.per_rank_batch,
                "samples/s": r.get("samples_per_s", float("nan")),
                "step time (s)": r.get("step_time_s", float("nan")),
                "data wait": f"{100 * r['data_wait_fraction']:.1f}%" if "data_wait_fraction" in r else "-",
                "other load": f"{100 * r['other_load']:.0f}%" if r.get("other_load") is not None else "-",
                "attempts": len(r.get("attempts", [])) or 1,
                "windows (steps)": f"{r['windows_used']} ({r['steps_timed']})" if "windows_used" in r else "-",
                "status": r.get("error", "ok"),
            }
        )
    return rows


def summary_rows(eff: dict[str, Any], device: str) -> list[dict[str, str]]:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    def x(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}x"

    if device == "cuda":
        return [
            {
                "measure": "DeepSpeed ZeRO-1 / DDP engine, 1 GPU",
                "value": x(eff.get("deepspeed_zero1_over_ddp_1gpu")),
                "definition": "throughput ratio; one process, so no partitioning: engine overhead only",
            }
        ]
    wait = eff.get("max_median_data_wait_fraction")
    return [
        {
            "measure": "weak-scaling efficiency (2 ranks)",
            "value": pct(eff["weak_efficiency"]),
            "definition": "thr(2r-ddp) / (2 x thr(1r-b1x-t1)); fixed per-rank batch, 1 thread per rank both sides; "
            f"target >= {100 * WEAK_TARGET:.0f}%",
        },
        {
            "measure": "weak-scaling efficiency by per-rank batch",
            "value": ", ".join(f"{b}: {pct(v)}" for b, v in eff.get("weak_efficiency_by_per_rank_batch", {}).items())
            or "-",
            "definition": "same ratio with more work per step (runs weak-pb<b>-1r / -2r): the 2-rank per-step "
            "overhead is amortised",
        },
        {
            "measure": "strong scaling: speed-up, efficiency",
            "value": f"{x(eff['strong_speedup_vs_1rank_1thread'])}, {pct(eff['strong_efficiency'])}",
            "definition": "fixed global batch: thr(2r-ddp) / thr(1r-b2x-t1), / 2 (1 thread per rank both sides)",
        },
        {
            "measure": "2 ranks x 1 thread vs 1 rank x 2 threads",
            "value": x(eff["two_ranks_over_one_rank_two_threads"]),
            "definition": "thr(2r-ddp) / thr(1r-b2x-t2): same 2 cores, same global batch",
        },
        {
            "measure": "DeepSpeed ZeRO-1 / DDP",
            "value": x(eff["deepspeed_zero1_over_ddp"]),
            "definition": "2 ranks, same global batch",
        },
        {
            "measure": "DeepSpeed ZeRO-2 / DDP",
            "value": x(eff["deepspeed_zero2_over_ddp"]),
            "definition": "2 ranks, same global batch",
        },
        {
            "measure": "data wait (worst run, median over windows)",
            "value": pct(wait),
            "definition": f"trainer's data_wait_fraction; target < {100 * DATA_WAIT_TARGET:.0f}%",
        },
    ]
