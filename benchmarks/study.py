"""``python -m benchmarks.study``: the paper's comparison where small scales exist, with decided findings.

The demo's pipeline (:class:`hpc_seaice.demo.Demo`, the same stages and commands) on a 256 x 256
synthetic Arctic (24 km cells, 5-daily 2009-2018: 584 training, 73 validation and 73 test
states): both VAEs (censored and Gaussian decoders), the encoding, both latent diffusion models,
the data-space model, a residual refiner of the censored LDM (the fourth model, docs/refiner.md),
sampling, and ``evaluate --findings`` with the floor and 95 % intervals. The
training lengths (:data:`FULL`) are sized from measured per-step costs so the whole study fits in
about two hours on 2 CPU cores; each part's wall time is recorded. Writes ``study.md`` and
``study.json`` (plan, stage times, the three verdicts with their numbers, the sanity checks of each
model against the floor, the VAEs' large-scale spectra against the floor's interval) and copies the
figures (spectra, maps, aggregate histograms, calibration, deformation scaling) into ``study/``.

``--quick``: the same pipeline on a 64 x 64 set over two years with a few training steps (a smoke
test of every stage, minutes; results under ``benchmarks/results/quick/``). Re-running resumes:
finished stages are skipped (``--clean`` starts over).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, RESULTS_OUT_HELP, environment, markdown_table, out_dir_for, positive_int
from hpc_seaice.demo import Demo, Plan
from hpc_seaice.evaluation.findings import render_findings
from hpc_seaice.fileio import atomic_write

NAME = "study"


def _steps(max_steps: int, batch: int, every: int) -> tuple[str, ...]:
    return (
        f"train.max_steps={max_steps}",
        f"train.batch_size={batch}",
        f"train.checkpoint_every={every}",
        f"train.val_every={every}",
        f"train.log_every={max(1, min(20, max_steps // 4))}",
    )


# Per-step costs measured at 256 x 256 on this 2-core VM, 2 ranks, 10 steps each: at load ~1-3
# VAE 3.1 s (batch 8), LDM 0.29 s (DDP, batch 16), data space 3.2 s (batch 8); at load ~7 (other
# jobs) VAE 5.5-6.7 s, LDM 0.55 s (DDP) and 0.62 s (ZeRO-2), data space 5.5-6.5 s, data-space
# sampling about 16 s per sample (28 Heun steps). At the quieter costs this plan takes about 2 h
# (VAEs 52 min, LDMs 12 min, data space 37 min, data, encoding, sampling and evaluation about
# 20 min); at load 7 about 3.5 h. --vae-steps, --ldm-steps, --data-steps resize it.
FULL = Plan(
    grid=256,
    freq="5D",
    overrides={
        "vae": _steps(500, 8, 250),
        "ldm": _steps(1200, 16, 600),
        "data-space": _steps(700, 8, 350),
        "refiner": _steps(400, 8, 200),
    },
    num_samples=32,
    sample_batch=4,
    equal_cost=False,
    benchmarks=False,
    refiner=True,
)
QUICK = Plan(
    grid=64,
    freq="15D",
    synth=("--start", "2016-10-01", "--end", "2018-12-31"),
    overrides={
        "vae": (*_steps(4, 4, 4), "optim.warmup_steps=2"),
        "ldm": (*_steps(4, 4, 4), "optim.warmup_steps=2"),
        "data-space": (*_steps(4, 4, 4), "optim.warmup_steps=2"),
        "refiner": (*_steps(4, 4, 4), "optim.warmup_steps=2", "refine.scale_states=4"),
    },
    num_samples=8,
    sample_batch=4,
    equal_cost=False,
    benchmarks=False,
    bootstrap=200,
    refiner=True,
)
FIGURES = ("spectra_sit.png", "spectra_all.png", "maps.png", "aggregates.png", "calibration.png", "miz_area.png")


def _interval(entry: dict[str, Any] | None, key: str) -> dict[str, float] | None:
    return (entry or {}).get("intervals", {}).get(key)


def _text(i: dict[str, float] | None) -> str:
    if not i or i.get("estimate") is None:
        return "n/a"
    return f"{i['estimate']:.3g} [{i['low']:.3g}, {i['high']:.3g}]"


def large_scale_check(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Each VAE's reconstruction: thickness PSD log-ratio above 400 km against the floor's interval there."""
    floor = _interval(metrics.get("floor"), "psd/sit/large_gt400km")
    rows = []
    for name, rec in metrics.get("reconstructions", {}).items():
        value = rec["psd_sit_band_log10_ratio"].get("large_gt400km")
        inside = None if value is None or floor is None else bool(floor["low"] <= value <= floor["high"])
        rows.append({"reconstruction": name, "sit PSD > 400 km": value, "floor": _text(floor), "inside": inside})
    return rows


def smoothing_scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """What ``benchmarks.smoothing`` reads: every source's spectra, skill and structure scores with intervals."""
    band = next((f.get("band") for f in metrics.get("findings", []) if f["id"] == "smoothing"), None)
    keep = ("psd/", "crps/", "aggregate/", "variogram/all")
    sources = {}
    for name, entry in {"floor (validation)": metrics.get("floor") or {}, **metrics["models"]}.items():
        scaling = (entry.get("deformation") or {}).get("scaling") or {}
        sources[name] = {
            "intervals": {k: v for k, v in entry.get("intervals", {}).items() if k.startswith(keep)},
            "beta": scaling.get("beta"),
            "copies_training": (entry.get("memorization") or {}).get("copies_training"),
        }
    return {"bands": {"small": band or "small_lt100km", "meso": "meso_100_400km"}, "sources": sources}


def summary(metrics: dict[str, Any], stages: list[Any], seconds: float, plan: Plan) -> dict[str, Any]:
    """What ``study.json`` holds besides the environment."""
    models = metrics["models"]
    scores = {
        name: {
            key: _interval(m, key)
            for key in ("crps/sit", "crps/sic", "psd/sit/small_lt100km", "psd/sit/meso_100_400km", "variogram/all")
        }
        | {"copies_training": (m.get("memorization") or {}).get("copies_training")}
        for name, m in {"floor (validation)": metrics.get("floor") or {}, **models}.items()
    }
    return {
        "plan": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(plan).items()},
        "stages": [{"stage": s.name, "seconds": s.seconds, "skipped": s.done} for s in stages],
        "total_seconds": seconds,  # this invocation (a resumed study skips finished stages)
        "stage_seconds": sum(st.seconds or 0.0 for st in stages),  # every stage, from whichever run made it
        "findings": metrics.get("findings", []),
        "scores": scores,
        "vae_large_scales": large_scale_check(metrics),
        "smoothing": smoothing_scores(metrics),
        "num_test_states": metrics["num_states"],
        "grid": metrics["grid"],
    }


def render(record: dict[str, Any], quick: bool) -> str:
    s = record["summary"]
    env = record["environment"]
    lines = [
        "# The study: data-space against latent diffusion, findings decided" + (" (quick smoke run)" if quick else ""),
        "",
        f"Synthetic {s['grid'][0]} x {s['grid'][1]} Arctic, {s['num_test_states']} test states; every model and the "
        f"floor (validation states scored as a model) with 95 % bootstrap intervals. Device: {env.get('device')}; "
        f"commit {env.get('git_commit', '?')}. Wall time of all stages {s['stage_seconds']:.0f} s (this invocation "
        f"{s['total_seconds']:.0f} s; a resumed study skips finished stages).",
        "",
        "## Findings",
        "",
        *render_findings(s["findings"]),
        "",
        "## Wall time of each part",
        "",
        markdown_table([{"stage": r["stage"], "seconds": r["seconds"], "skipped": r["skipped"]} for r in s["stages"]]),
        "",
        "## Main scores against the floor",
        "",
        markdown_table(
            [
                {"source": name, **{k: _text(v) for k, v in row.items() if k != "copies_training"}}
                | {"copies training": row["copies_training"]}
                for name, row in s["scores"].items()
            ]
        ),
        "",
        "## Do the VAEs keep the large scales?",
        "",
        markdown_table(s["vae_large_scales"]) if s["vae_large_scales"] else "(no reconstructions)",
        "",
        "The full evaluation report: `study/report.md`; figures below.",
        "",
    ]
    lines += [f"![{name}](study/{name})" for name in FIGURES if name in record["figures"]]
    if "deformation_scaling.png" in record["figures"]:
        lines.append("![deformation scaling](study/deformation_scaling.png)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.study", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="64 x 64, two years, a few steps: a smoke test (minutes)")
    p.add_argument("--out", default="", help=RESULTS_OUT_HELP)
    p.add_argument("--work", default="", help="folder of data, runs and samples (default study-work/ or study-quick/)")
    p.add_argument("--clean", action="store_true", help="remove the work folder first")
    flags = (
        ("vae", "--vae-steps"),
        ("ldm", "--ldm-steps"),
        ("data-space", "--data-steps"),
        ("refiner", "--refiner-steps"),
    )
    for run, flag in flags:
        p.add_argument(
            flag, type=positive_int, default=None, help=f"training steps of the {run} run(s) (default: the plan's)"
        )
    args = p.parse_args(argv)
    plan = QUICK if args.quick else FULL
    steps = {"vae": args.vae_steps, "ldm": args.ldm_steps, "data-space": args.data_steps, "refiner": args.refiner_steps}
    if any(steps.values()):
        extra = {run: (*plan.overrides[run], f"train.max_steps={n}") for run, n in steps.items() if n}
        plan = replace(plan, overrides={**plan.overrides, **extra})
    work = Path(args.work) if args.work else REPO_ROOT / ("study-quick" if args.quick else "study-work")
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)
    out = out_dir_for(args.out, args.quick)
    start = time.perf_counter()
    demo = Demo(work, plan)
    done = demo.pipeline()
    seconds = time.perf_counter() - start
    metrics = json.loads((done.evaluation / "metrics.json").read_text())
    figures_dir = out / NAME
    figures_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for figure in sorted(done.evaluation.glob("*.png")):
        shutil.copy2(figure, figures_dir / figure.name)
        copied.append(figure.name)
    report = (done.evaluation / "report.md").read_text()
    atomic_write(figures_dir / "report.md", report.replace(f"{work}/", ""))
    record = {
        "name": NAME,
        "environment": environment(),
        "summary": summary(metrics, demo.stages, seconds, plan),
        "figures": copied,
    }
    atomic_write(out / f"{NAME}.json", json.dumps(record, indent=1, default=str) + "\n")
    atomic_write(out / f"{NAME}.md", render(record, args.quick))
    verdicts = ", ".join(f"{f['id']}: {f['verdict']}" for f in metrics.get("findings", []))
    print(f"study finished in {seconds:.0f} s ({verdicts}): {out / (NAME + '.md')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
