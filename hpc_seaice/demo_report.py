"""``demo/report.md``: what ``make demo`` ran, the model comparison, the study's findings, speed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.evaluation.findings import render_findings, smoothing_band


@dataclass
class Stage:
    name: str
    done: bool
    seconds: float | None = None  # wall time when it ran (None: skipped, and no earlier time on record)
    outputs: list[str] = field(default_factory=list)


def _benchmark_table(path: Path) -> str:
    """A benchmark's markdown table, its title demoted under the report's own headings."""
    markdown = path.with_suffix(".md")
    if not markdown.is_file():
        return f"(no {markdown.name})"
    lines = markdown.read_text().splitlines()
    return "\n".join("#### " + line[2:] if line.startswith("# ") else line for line in lines)


ROLE_MODELS = {  # the model names the demo's samples files carry, per --findings role
    "data-space": "diffusion-data-space",
    "ldm-censored": "diffusion-ldm-censored",
    "ldm-gaussian": "diffusion-ldm-gaussian",
    "ldm-refined": "refiner-censored",  # only when the plan trains a refiner (benchmarks.study)
}


def write_report(
    out: Path,
    stages: list[Stage],
    diffusion_runs: dict,
    vae_runs: dict,
    seconds: float,
    costs: dict[str, float],
    equal_cost: tuple[str, int, float] | None,
) -> None:
    """``demo/report.md``: what ran, the model comparison, figures and measured speed ratios."""
    evaluation = out / "evaluation"
    lines = [
        "# hpc-seaice demo report",
        "",
        "Everything below was produced by `make demo` on this machine: synthetic neXtSIM-like data "
        "(not real neXtSIM output), CPU only, 2 processes. The models are trained for minutes, so the "
        "scores compare the pipelines, not converged models.",
        "",
        "## Pipeline",
        "",
        "| # | stage | time | output |",
        "|---|---|---|---|",
    ]
    for i, stage in enumerate(stages, 1):
        if not stage.done:
            took = f"{stage.seconds:.0f} s"
        elif stage.seconds is not None:
            took = f"{stage.seconds:.0f} s (an earlier run; skipped in this one)"
        else:
            took = "skipped (already done)"
        shown = [str(Path(o).relative_to(out)) if Path(o).is_relative_to(out) else o for o in stage.outputs]
        lines.append(f"| {i} | {stage.name} | {took} | {', '.join(f'`{o}`' for o in shown)} |")
    lines += ["", f"Total wall time of this run: {seconds:.0f} s.", ""]
    lines += ["## Training runs", "", "| run | steps | last loss | samples/s (last log) |", "|---|---|---|---|"]
    for name, run_dir in {**{f"vae-{k}": v for k, v in vae_runs.items()}, **diffusion_runs}.items():
        records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
        if records:
            last = records[-1]
            lines.append(f"| {name} | {last['step']} | {last['loss']:.4g} | {last['samples_per_s']:.3g} |")
    metrics_file = evaluation / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        lines += ["", *findings_section(metrics), "", *compute_section(metrics, costs, equal_cost)]
    lines += ["", "## Evaluation against the test split", ""]
    report = evaluation / "report.md"
    if report.is_file():
        text = report.read_text().split("\n", 1)[1]  # drop its title
        for figure in sorted(evaluation.glob("*.png")):
            text = text.replace(f"]({figure.name})", f"](evaluation/{figure.name})")
        text = text.replace(f"{out}/", "")  # paths relative to the report
        lines.append(text.replace("\n## ", "\n### "))
        lines += [
            "",
            "How to read OOB % for the latent models: it counts the decoder's location mu before "
            "clipping. A censored decoder is *meant* to put mu beyond a bound where the truth sits on "
            "it (open water, full pack), so a high OOB % there is the mechanism that makes exact 0/1 "
            "plateaus after clipping, not an error; for the Gaussian decoder and data space it measures "
            "real bound violations.",
        ]
    lines += ["", "## Measured speed (quick benchmark: demo presets, not the paper geometry)", ""]
    lines.append(_benchmark_table(out / "benchmarks" / "speed.json"))
    lines += ["", "## Data loading", "", _benchmark_table(out / "benchmarks" / "dataloader.json")]
    if (out / "benchmarks" / "speed_ratios.png").is_file():
        lines += ["", "![speed ratios](benchmarks/speed_ratios.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def findings_section(metrics: dict) -> list[str]:
    """The study's three findings as ``evaluate --findings`` decided them in this run (the same code)."""
    lines = [
        "## The study's three findings, decided in this run",
        "",
        "`hpc-seaice evaluate --findings` decides each finding against the floor (validation states scored "
        "like a model) with 95 % bootstrap intervals: `holds`, `does not hold`, or `undecided` with the reason "
        "(`hpc_seaice/evaluation/findings.py`, `docs/evaluation.md`). On the demo's 128 x 128 grid and minutes "
        "of training, `undecided` is the honest answer wherever the intervals or the sanity checks say so.",
        "",
    ]
    if not metrics.get("findings"):
        return lines + ["(the evaluation decided no findings: no --findings, or no validation split)"]
    return lines + render_findings(metrics["findings"])


def _fmt(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


def _scores(entry: dict, wavelength: list[float]) -> str:
    crps = ", ".join(f"{var} {_fmt(entry['variables'][var]['crps'], '.3g')}" for var in VARIABLES)
    band = smoothing_band(wavelength)
    psd = f"{band} {_fmt(entry['psd_sit_band_log10_ratio'].get(band), '+.2f')}" if band else "n/a"
    calibration = _fmt(entry["cover_calibration"]["error"], ".3f")
    return f"CRPS {crps}; thickness PSD log10-ratio {psd}; calibration error {calibration}"


def compute_section(metrics: dict, costs: dict[str, float], equal_cost: tuple[str, int, float] | None) -> list[str]:
    """Equal steps and equal compute: each model's training cost and the data-space model at the LDMs' cost."""
    lines = [
        "## Cost: equal steps and equal compute",
        "",
        "Training wall seconds on 2 ranks (1 thread each), summed from each run's `metrics.jsonl`; a latent "
        "model's cost includes its VAE and the encoding of the data set. CPU seconds = 2 x wall seconds.",
        "",
        "| model | training wall s | CPU s |",
        "|---|---|---|",
    ]
    for name, seconds in costs.items():
        lines.append(f"| {name} | {seconds:.0f} | {2 * seconds:.0f} |")
    models, wavelength = metrics["models"], metrics["spectrum"]["wavelength_km"]
    lines += ["", "**Equal steps** (each model as configured):", ""]
    for role in ("ldm-censored", "ldm-gaussian", "data-space"):
        name = ROLE_MODELS[role]
        lines.append(f"- {name}: {_scores(models[name], wavelength)}")
    lines += ["", "**Equal compute** (the data-space model at the censored LDM's total cost):", ""]
    if equal_cost is None:
        lines.append(
            f"- {ROLE_MODELS['data-space']} trained for less than the censored LDM's cost: its final scores above "
            "are already the equal-compute view."
        )
    else:
        name, step, seconds = equal_cost
        if name in models:
            scores = _scores(models[name], wavelength)
            lines.append(f"- {name} (checkpoint of step {step}, {seconds:.0f} s of training): {scores}")
        else:
            lines.append(f"- no samples of {name} were evaluated")
    return lines
