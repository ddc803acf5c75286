"""Bar chart of the latent-over-data speed-ups next to their FLOP ratios.

    python -m benchmarks.plots [benchmarks/results/speed.json] [--out PNG]

Two groups of bars (training throughput, sampling time per generated sample), each with the
measured ratio and the ratio of counted FLOPs (the speed-up to expect if both networks ran
equally efficiently), and the paper's "about 25x" as a dashed line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import results_dir


def plot_speed_ratios(speed_json: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the PNG for one ``speed.json``; returns its path (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record: dict[str, Any] = json.loads(Path(speed_json).read_text())
    summary = record["summary"]
    ratios = summary["ratios"]
    target = summary["targets"]["latent_over_data_ratio"]
    kinds = {name: summary["spaces"][name]["sampling"]["kind"] for name in ("data", "latent")}
    groups = ["training throughput", "sampling time per sample"]
    measured = [ratios["training_throughput"], ratios["sampling_time"]]
    flops = [ratios["training_flops"], ratios["sampling_flops"]]
    sampling_label = "measured" if set(kinds.values()) == {"measured"} else "measured parts, data side derived"

    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=120)
    width = 0.36
    xs = range(len(groups))
    bars_m = ax.bar([x - width / 2 for x in xs], measured, width, label="measured time ratio", color="#1f77b4")
    bars_f = ax.bar([x + width / 2 for x in xs], flops, width, label="FLOP ratio", color="#b0b0b0")
    for bars in (bars_m, bars_f):
        for bar in bars:
            ax.annotate(
                f"{bar.get_height():.1f}x",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=9,
            )
    ax.axhline(target, color="#d62728", linestyle="--", linewidth=1, label=f"paper: about {target:g}x")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([groups[0], f"{groups[1]}\n({sampling_label})"])
    ax.set_ylabel("latent / data-space speed-up (x)")
    presets = summary["presets"]
    geometry = summary["geometry"]
    ax.set_title(
        f"{presets['latent']} {'x'.join(map(str, geometry['latent']))} vs {presets['data']} "
        f"{'x'.join(map(str, geometry['data']))}\n{summary['device_name']}, {summary['precision']}, "
        f"batch {summary['batch_size']}, compile {'on' if summary['compile'] else 'off'}"
        + (" (QUICK)" if summary["quick"] else ""),
        fontsize=9,
    )
    ax.set_ylim(0, max([*measured, *flops, target]) * 1.18)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plots", description=__doc__.splitlines()[0])
    p.add_argument("speed_json", nargs="?", default=str(results_dir() / "speed.json"))
    p.add_argument("--out", default="", help="PNG path (default: speed_ratios.png next to the JSON)")
    args = p.parse_args(argv)
    if not Path(args.speed_json).is_file():
        print(
            f"benchmarks.plots: error: no such file: {args.speed_json} (run python -m benchmarks.speed)",
            file=sys.stderr,
        )
        return 2
    out = args.out or Path(args.speed_json).with_name("speed_ratios.png")
    print(f"written {plot_speed_ratios(args.speed_json, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
