"""``python -m benchmarks.smoothing``: which latent path keeps the small scales, at what cost.

Reads what two measurements wrote (nothing is measured here, nothing is typed in):

- ``study.json`` (``python -m benchmarks.study``, 256 x 256): for the plain LDMs, the residual
  refiner (``refiner-censored``), the spectral decoder noise and the data-space model, against
  the floor with 95 % intervals: PSD log10-ratios in the small and meso bands of every spectral
  variable, per-cell CRPS, aggregate CRPS, the MIZ-area distance, the variogram score, deformation
  scaling beta(q) and whether samples copy training states; the findings, with
  ``small_scales_kept`` decided for the refiner;
- ``speed.json`` (``python -m benchmarks.speed``, the paper geometry): time per generated
  sample of the data-space model, the plain latent path, latent + refiner and latent + spectral
  noise, all in that one run.

Writes ``smoothing.json``, ``smoothing.md`` (the table and the trade-off in words) and
``smoothing.png`` (generation speed-up against the finest-band thickness power, each path
with its interval, the floor's interval shaded).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_OUT_HELP, environment, markdown_table, out_dir_for, results_dir
from hpc_seaice.fileio import atomic_write

NAME = "smoothing"
# What each path is called in the study (model names) and in the speed run (ratio keys).
PATHS = {
    "plain censored LDM": ("diffusion-ldm-censored", "sampling_time"),
    "plain Gaussian LDM": ("diffusion-ldm-gaussian", "sampling_time"),
    "LDM + residual refiner": ("refiner-censored", "sampling_time_latent_refined"),
    "LDM + spectral decoder noise": ("ldm-censored + spectral decoder noise", "sampling_time_latent_spectral"),
    "data-space model": ("diffusion-data-space", None),
}
FLOOR = "floor (validation)"
KEPT = ("sit", "sic", "damage")
SPEED_TARGET = 15.0  # the latent speed-up a path may keep at least (a fifth of the plain LDM's 25x spent at most)


def _read(folder: Path, name: str) -> dict[str, Any]:
    path = folder / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"benchmarks.smoothing: {path} is missing; run python -m benchmarks.{name} first")
    return json.loads(path.read_text())


def _iv(scores: dict[str, Any], key: str) -> dict[str, float] | None:
    return scores.get(key)


def _text(i: dict[str, float] | None, spec: str = "+.2f") -> str:
    if not i or i.get("estimate") is None or not math.isfinite(i["estimate"]):
        return "n/a"
    return f"{i['estimate']:{spec}} [{i['low']:{spec}}, {i['high']:{spec}}]"


def rows(study: dict[str, Any], speed: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
    """One row per path: spectra by band against the floor, skill, structure, copying, speed-up."""
    s = study["summary"]
    paths = s["smoothing"]
    small, meso = paths["bands"]["small"], paths["bands"]["meso"]
    floor = paths["sources"][FLOOR]
    ratios = speed["summary"]["ratios"]
    out = []
    for label, (model, ratio_key) in PATHS.items():
        entry = paths["sources"].get(model)
        if entry is None:
            continue
        row: dict[str, Any] = {"path": label}
        for var in (*KEPT, "siu", "siv", "speed"):
            row[f"{var} {small}"] = _text(_iv(entry["intervals"], f"psd/{var}/{small}"))
        row[f"sit {meso}"] = _text(_iv(entry["intervals"], f"psd/sit/{meso}"))
        row["CRPS sit"] = _text(_iv(entry["intervals"], "crps/sit"), ".3g")
        row["CRPS sic"] = _text(_iv(entry["intervals"], "crps/sic"), ".3g")
        row["extent CRPS"] = _text(_iv(entry["intervals"], "aggregate/extent/crps"), ".3g")
        row["MIZ-area W1"] = _text(_iv(entry["intervals"], "aggregate/miz_area/wasserstein"), ".3g")
        row["variogram"] = _text(_iv(entry["intervals"], "variogram/all"), ".3g")
        row["beta(1,2,3)"] = ", ".join(f"{b:.2f}" for b in entry["beta"]) if entry.get("beta") else "n/a"
        row["copies training"] = entry.get("copies_training")
        row["speed-up vs data space"] = f"{ratios[ratio_key]:.1f}x" if ratio_key in ratios else "1x"
        out.append(row)
    floor_row = {"path": "floor (validation year)"}
    for var in (*KEPT, "siu", "siv", "speed"):
        floor_row[f"{var} {small}"] = _text(_iv(floor["intervals"], f"psd/{var}/{small}"))
    floor_row[f"sit {meso}"] = _text(_iv(floor["intervals"], f"psd/sit/{meso}"))
    for key, name in (
        ("crps/sit", "CRPS sit"),
        ("crps/sic", "CRPS sic"),
        ("aggregate/extent/crps", "extent CRPS"),
        ("aggregate/miz_area/wasserstein", "MIZ-area W1"),
        ("variogram/all", "variogram"),
    ):
        floor_row[name] = _text(_iv(floor["intervals"], key), ".3g")
    floor_row["beta(1,2,3)"] = ", ".join(f"{b:.2f}" for b in floor["beta"]) if floor.get("beta") else "n/a"
    floor_row["copies training"] = floor.get("copies_training")
    floor_row["speed-up vs data space"] = "-"
    return [floor_row, *out], small, meso


def verdict_words(study: dict[str, Any], speed: dict[str, Any]) -> list[str]:
    """The trade-off in words, from the fourth finding and the speed ratios (nothing else)."""
    s = study["summary"]
    found = {f["id"]: f for f in s["findings"]}
    ratios = speed["summary"]["ratios"]
    refined_speed = ratios.get("sampling_time_latent_refined")
    spectral_speed = ratios.get("sampling_time_latent_spectral")
    kept = found.get("small_scales_kept")
    lines = []
    if kept is None:
        return ["The study ran without the refiner (no fourth role): nothing to decide."]
    fast = refined_speed is not None and refined_speed >= SPEED_TARGET
    lines.append(
        f"- Fidelity: `small_scales_kept` for the residual refiner **{kept['verdict']}** in this run "
        f"({kept['reason']}); the plain LDMs' `smoothing` finding: **{found['smoothing']['verdict']}**."
    )
    if refined_speed is not None:
        lines.append(
            f"- Speed: latent + refiner generates {refined_speed:.1f}x faster than the data-space model at the paper "
            f"geometry (target >= {SPEED_TARGET:g}x: {'met' if fast else 'missed'}); the plain LDM "
            f"{ratios['sampling_time']:.1f}x and latent + spectral noise {spectral_speed:.1f}x, in the same run "
            f"({speed['summary']['device_name']})."
        )
    spectra, worse = [], []
    for key, i in kept["numbers"].items():
        name = key.split(": ")[-1]
        if " - " in key and i["low"] > 0:  # a paired difference refined - censored, worse beyond its interval
            worse.append(f"{name} {i['estimate']:+.3g} [{i['low']:+.3g}, {i['high']:+.3g}]")
        elif name.startswith("psd/") and not key.startswith("floor"):
            spectra.append(f"{name.split('/')[1]} {i['estimate']:+.2f}")
    if spectra:
        lines.append(
            f"- The refiner's finest-band log10 power ratios: {', '.join(spectra)} (criterion: within 0.3 decade "
            "of the floor's interval)."
        )
    if worse:
        lines.append(
            "- Paired differences refined - plain censored LDM that are worse beyond their interval: "
            f"{'; '.join(worse)}."
        )
    both = kept["verdict"] == "holds" and fast
    lines.append(
        "- Both targets are met by the residual refiner in these runs."
        if both
        else "- Not both targets are met in these runs; the table shows which path came closest on each side."
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.smoothing", description=__doc__.splitlines()[0])
    p.add_argument("--results", default="", help="folder with study.json and speed.json (default: the results folder)")
    p.add_argument("--out", default="", help=RESULTS_OUT_HELP)
    args = p.parse_args(argv)
    folder = Path(args.results) if args.results else results_dir()
    study, speed = _read(folder, "study"), _read(folder, "speed")
    table, small, meso = rows(study, speed)
    words = verdict_words(study, speed)
    out = out_dir_for(args.out, False)
    record = {
        "name": NAME,
        "environment": environment(),
        "sources": {
            "study": {"commit": study["environment"].get("git_commit"), "device": study["environment"].get("device")},
            "speed": {"commit": speed["environment"].get("git_commit"), "device": speed["summary"].get("device_name")},
        },
        "bands": {"small": small, "meso": meso},
        "rows": table,
        "trade_off": words,
    }
    atomic_write(out / f"{NAME}.json", json.dumps(record, indent=1, default=str) + "\n")
    plot(study, speed, small, out / f"{NAME}.png")
    md = [
        "# Latent paths that do not smooth: fidelity against speed",
        "",
        f"Fidelity from `study.json` (256 x 256 synthetic Arctic, commit {record['sources']['study']['commit']}), "
        f"speed from `speed.json` (paper geometry 5 x 512 x 512, {record['sources']['speed']['device']}, commit "
        f"{record['sources']['speed']['commit']}). PSD columns: log10 power ratio to the test year in the {small} "
        f"band (the finest with >= 3 rings) and the {meso} band; 95 % intervals in brackets. What each path is: "
        "docs/refiner.md.",
        "",
        "## The trade-off",
        "",
        *words,
        "",
        "## Table",
        "",
        markdown_table(table),
        "",
        f"![speed against small-scale power]({NAME}.png)",
        "",
    ]
    atomic_write(out / f"{NAME}.md", "\n".join(md))
    print(f"wrote {out / (NAME + '.md')}", flush=True)
    return 0


def plot(study: dict[str, Any], speed: dict[str, Any], small: str, path: Path) -> None:
    """Speed-up (x) against the finest-band thickness power of each path, the floor's interval shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = study["summary"]["smoothing"]["sources"]
    ratios = speed["summary"]["ratios"]
    key = f"psd/sit/{small}"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    floor = paths[FLOOR]["intervals"].get(key)
    if floor:
        ax.axvspan(floor["low"], floor["high"], color="0.85", label="floor (validation) 95 %")
    for label, (model, ratio_key) in PATHS.items():
        entry = paths.get(model)
        i = entry["intervals"].get(key) if entry else None
        if not i:
            continue
        y = ratios.get(ratio_key, 1.0) if ratio_key else 1.0
        err = [[i["estimate"] - i["low"]], [i["high"] - i["estimate"]]]
        ax.errorbar([i["estimate"]], [y], xerr=err, fmt="o", capsize=3, label=label)
    ax.axhline(SPEED_TARGET, color="0.5", ls="--", lw=0.8, label=f"{SPEED_TARGET:g}x target")
    ax.set_yscale("log")
    ax.set_xlabel(f"thickness PSD log10 ratio to the test year, {small}")
    ax.set_ylabel("generation speed-up vs data space (x)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
