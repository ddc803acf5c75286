"""Heun-step sweep: what the number of sampler steps costs in the main scores.

``hpc-seaice evaluate --step-sweep RUN_DIR`` samples the same noise (same seed) from one
diffusion run with half, once and twice the default number of Heun steps (15, 30 and 60:
:data:`SWEEP_STEPS`) into ``OUT/step_sweep/``,
scores the three files with the others, and :func:`sweep_table` lines up their main scores
(CRPS, banded PSD log-ratios, calibration errors, MIZ-area W1) by step count. Sample files of
one run and checkpoint that differ only in their ``steps`` attribute (made with
``hpc-seaice sample --steps``) are lined up the same way without ``--step-sweep``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpc_seaice.data.format.samples_file import write_samples
from hpc_seaice.diffusion.sampler import DEFAULT_STEPS
from hpc_seaice.evaluation.reconstruction import evaluation_device
from hpc_seaice.inference.ensemble import ensemble_dataset, generate_ensemble, open_diffusion_run

# The default in the middle: what halving the steps costs and what doubling them would still change.
SWEEP_STEPS: tuple[int, ...] = (DEFAULT_STEPS // 2, DEFAULT_STEPS, 2 * DEFAULT_STEPS)
DEFAULT_SWEEP_SAMPLES = 8


def generate_sweep(
    run: str, out_dir: Path, num: int = DEFAULT_SWEEP_SAMPLES, steps: tuple[int, ...] = SWEEP_STEPS, seed: int = 0
) -> list[Path]:
    """Sample ``num`` states from ``run`` with each step count (same noise); the written files."""
    device = evaluation_device()
    loaded = open_diffusion_run(run, "latest", device, warn_as="hpc-seaice evaluate --step-sweep")
    paths = []
    for n in steps:
        path = Path(out_dir) / f"{Path(run).name}-steps{n:03d}.nc"
        fields, raw = generate_ensemble(loaded, range(num), seed, n, 4, device)
        write_samples(path, ensemble_dataset(loaded, fields, raw, n, seed))
        paths.append(path)
    return paths


def _row(name: str, model: dict[str, Any]) -> dict[str, Any]:
    attrs = model.get("attrs", {})
    return {
        "model": name,
        "steps": int(attrs["steps"]),
        "network_evaluations": attrs.get("network_evaluations_per_sample"),
        "crps": {var: s["crps"] for var, s in model["variables"].items()},
        "psd_sit_band_log10_ratio": model["psd_sit_band_log10_ratio"],
        "calibration_error": model["cover_calibration"]["error"],
        "calibration_unweighted_error": model["cover_calibration"]["unweighted_error"],
        "calibration_partial_error": model["cover_calibration"]["partial_error"],
        "miz_area_wasserstein_km2": model["miz_area_wasserstein_km2"],
    }


def sweep_table(models: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group scored models by (run, checkpoint step); keep groups with two or more step counts.

    Returns ``{run name @ step: [row per step count, ascending]}`` with the main scores per row.
    Runs are told apart by their full path; the key shows the folder name, or the full path when
    two runs of one folder name are lined up.
    """
    groups: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for name, model in models.items():
        attrs = model.get("attrs", {})
        if "run" not in attrs or "steps" not in attrs:
            continue
        key = (str(attrs["run"]), str(attrs.get("checkpoint_step", "?")))
        groups.setdefault(key, {}).setdefault(int(attrs["steps"]), _row(name, model))
    groups = {key: rows for key, rows in groups.items() if len(rows) > 1}
    names = [Path(run).name for run, _ in groups]
    return {
        f"{run if names.count(Path(run).name) > 1 else Path(run).name} @ step {step}": [rows[s] for s in sorted(rows)]
        for (run, step), rows in groups.items()
    }
