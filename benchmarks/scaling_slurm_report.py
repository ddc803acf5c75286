"""Tables and plot of the cluster scaling benchmark (``python -m benchmarks.scaling --slurm``).

Efficiencies are against the run at the smallest node count (normally 1 node) of the same space:
``(samples_per_s / samples_per_s of the baseline) / (nodes / baseline nodes)``. For weak scaling
(fixed per-rank batch) that is the throughput per rank kept; for strong scaling (fixed global batch)
it is the speed-up per node. 100 % is perfect scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.common import environment, markdown_table
from hpc_seaice.fileio import atomic_target, atomic_write

WEAK = ("base", "weak")
STRONG = ("base", "strong")

COLUMNS_MEANING = (
    "**space**: data-space or latent diffusion. **mode**: weak = fixed per-rank batch, strong = fixed global "
    "batch, base = the smallest node count (the baseline of both). **nodes**, **ranks**: the job's nodes and "
    "training processes (one per GPU, or --tasks-per-node). **engine**: DDP or DeepSpeed ZeRO. **global batch**: "
    "samples per optimizer step over all ranks. **samples/s**: the trainer's global throughput, median over the "
    "logged windows after the warm-up ones. **step time (s)**: median wall time of one training step. **data "
    "wait**: share of the wall time the training loop waited for the next batch. **memory (MB)**: rank 0's peak "
    "(GPU: allocated by torch; CPU: resident set). **all-reduce**: median time from the first gradient bucket "
    "handed to the all-reduce to the last one back, over the step time (DDP comm hook; it overlaps the backward "
    "pass, so it is an upper bound of what communication costs; '-' without DDP or with one rank). **weak eff.**, "
    "**strong eff.**: throughput over the baseline's, divided by the node ratio. **hosts**: where the ranks ran. "
    "**status**: ok, or why there is no number (SLURM state and reason; the log is in the JSON and printed)."
)


def _ok(row: dict[str, Any]) -> bool:
    return row.get("status") == "ok" and bool(row.get("samples_per_s"))


def _baseline(rows: list[dict[str, Any]], space: str, modes: tuple[str, ...]) -> dict[str, Any] | None:
    candidates = [r for r in rows if r["space"] == space and r["mode"] in modes]
    if not candidates:
        return None
    smallest = min(r["nodes"] for r in candidates)
    base = [r for r in candidates if r["nodes"] == smallest and _ok(r)]
    return base[0] if base else None


def efficiency(row: dict[str, Any], base: dict[str, Any] | None) -> float | None:
    """Throughput over the baseline's, per node ratio; None without both numbers."""
    if base is None or not _ok(row):
        return None
    return (row["samples_per_s"] / base["samples_per_s"]) / (row["nodes"] / base["nodes"])


def finish_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their weak and strong efficiencies against the smallest node count."""
    done = []
    for row in rows:
        row = {k: v for k, v in row.items() if k not in ("weak_efficiency", "strong_efficiency")}
        if row["mode"] in WEAK:
            row["weak_efficiency"] = efficiency(row, _baseline(rows, row["space"], WEAK))
        if row["mode"] in STRONG:
            row["strong_efficiency"] = efficiency(row, _baseline(rows, row["space"], STRONG))
        done.append(row)
    return done


def latent_over_data(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Latent/data throughput ratio at each size, for the weak and the strong series."""
    by_key = {(r["space"], r["mode"], r["nodes"]): r for r in rows}
    ratios = []
    for nodes in sorted({r["nodes"] for r in rows}):
        entry: dict[str, Any] = {"nodes": nodes}
        for series, modes in (("weak", WEAK), ("strong", STRONG)):
            pair = [
                next((by_key[(s, m, nodes)] for m in modes if (s, m, nodes) in by_key), None)
                for s in ("latent", "data")
            ]
            if all(p is not None and _ok(p) for p in pair):
                entry[series] = pair[0]["samples_per_s"] / pair[1]["samples_per_s"]
                entry["ranks"] = pair[0]["ranks"]
        if len(entry) > 1:
            ratios.append(entry)
    return ratios


def _cell(text: str) -> str:
    """Text that keeps a markdown table whole (sbatch's messages contain '|')."""
    return str(text).replace("|", "/").replace("\n", " ")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = []
    for r in rows:
        ok = _ok(r)
        shown.append(
            {
                "space": r["space"],
                "mode": r["mode"],
                "nodes": r["nodes"],
                "ranks": r["ranks"],
                "engine": r.get("engine", ""),
                "global batch": r["global_batch"],
                "samples/s": r["samples_per_s"] if ok else float("nan"),
                "step time (s)": r.get("step_time_s", float("nan")) if ok else float("nan"),
                "data wait": _pct(r.get("data_wait_fraction")) if ok else "-",
                "memory (MB)": r.get("memory_mb") if ok and r.get("memory_mb") is not None else float("nan"),
                "all-reduce": _pct(r.get("allreduce_share")) if ok else "-",
                "weak eff.": _pct(r.get("weak_efficiency")) if "weak_efficiency" in r else "",
                "strong eff.": _pct(r.get("strong_efficiency")) if "strong_efficiency" in r else "",
                "hosts": ",".join(r.get("hosts") or []) or "-",
                "status": "ok" if ok else f"**{_cell(r.get('status', 'not run'))}**",
            }
        )
    return shown


def describe_cluster() -> str:
    """The nodes as SLURM describes them (name, CPUs, memory MB, GPUs), for the record."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %c %m %G"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "sinfo unavailable"
    nodes = sorted({line.strip() for line in proc.stdout.splitlines() if line.strip()})
    described = []
    for fields in (n.split() for n in nodes):
        if len(fields) == 4:
            gpus = "no GPUs" if fields[3] in ("(null)", "") else f"GPUs {fields[3]}"
            described.append(f"{fields[0]}: {fields[1]} CPUs, {fields[2]} MB, {gpus}")
    return "; ".join(described) or "sinfo listed no nodes"


def plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Throughput and efficiency against nodes, per space and series; None if nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    drawn = False
    for space, marker in (("data", "o"), ("latent", "s")):
        for series, modes, style in (("weak", WEAK, "-"), ("strong", STRONG, "--")):
            points = sorted((r["nodes"], r) for r in rows if r["space"] == space and r["mode"] in modes and _ok(r))
            if not points:
                continue
            drawn = True
            label = f"{space}, {series}"
            left.plot(
                [n for n, _ in points], [r["samples_per_s"] for _, r in points], style, marker=marker, label=label
            )
            eff = [(n, r.get(f"{series}_efficiency")) for n, r in points]
            right.plot(
                [n for n, e in eff if e is not None],
                [100 * e for _, e in eff if e is not None],
                style,
                marker=marker,
                label=label,
            )
    if not drawn:
        plt.close(fig)
        return None
    left.set(xlabel="nodes", ylabel="samples/s (global)", title="throughput")
    right.axhline(100, color="grey", lw=0.8)
    right.set(xlabel="nodes", ylabel="% of the baseline per node", title="scaling efficiency")
    for ax in (left, right):
        ax.set_xticks(sorted({r["nodes"] for r in rows}))
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_outputs(
    out: Path, name: str, rows: list[dict[str, Any]], args: argparse.Namespace, cluster: str, work: Path, wall_s: float
) -> None:
    """``NAME.json`` (every row with its job, log and fingerprint), ``NAME.md`` and ``NAME.png``."""
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("nodes", "space") and not callable(v)}
    ratios = latent_over_data(rows)
    nodes_text = describe_cluster()
    record = {
        "name": name,
        "cluster": {"name": cluster, "nodes": nodes_text, "note": args.cluster_note},
        "environment": environment(),
        "settings": settings,
        "work": str(work),
        "wall_s": wall_s,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "results": rows,
        "latent_over_data": ratios,
    }
    atomic_write(out / f"{name}.json", json.dumps(record, indent=1, default=str) + "\n")
    ratio_rows = [
        {
            "nodes": r["nodes"],
            "ranks": r.get("ranks", "-"),
            "weak: latent / data": r.get("weak", float("nan")),
            "strong: latent / data": r.get("strong", float("nan")),
        }
        for r in ratios
    ]
    failed = [r for r in rows if not _ok(r)]
    md = [
        f"# {name}: the trainer's scaling over the nodes of SLURM cluster `{cluster or '?'}`",
        "",
        f"Cluster: {args.cluster_note or '(no --cluster-note given)'}. Nodes as SLURM sees them: {nodes_text}.",
        "",
        f"One SLURM job per configuration (`hpc-seaice submit`'s code), {args.steps} steps, {args.log_every} steps per "
        f"logged window, {args.skip} warm-up window(s) not counted; per-rank batch {args.batch} (weak), global batch "
        f"{args.global_batch} (strong); {'QUICK run: tiny networks' if args.quick else 'demo-size networks'}. "
        f"1-minute load average of the submitting host when written: {record['load_average_1min_at_end']}.",
        "",
        markdown_table(table(rows)),
        "",
        "Latent / data throughput ratio at each size:",
        "",
        markdown_table(ratio_rows) if ratio_rows else "(needs both spaces measured at a size)",
        "",
        COLUMNS_MEANING,
        "",
    ]
    if failed:
        md += ["Not measured:", ""]
        md += [
            f"- {r['name']}: {r.get('status')} (job {r.get('job_id') or '-'}, log {r.get('log') or '-'})"
            for r in failed
        ]
        md.append("")
    md.append("Environment of the submitting host: " + ", ".join(f"{k} {v}" for k, v in record["environment"].items()))
    md.append("")
    atomic_write(out / f"{name}.md", "\n".join(md))
    plot(rows, out / f"{name}.png")
