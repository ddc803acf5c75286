"""How much compute each demo model trained for, and the data-space checkpoint at the LDMs' cost.

The study's point is cost as well as quality, so the demo reports two views: equal steps (each
model as configured) and equal compute (the data-space model's scores at the training cost of a
latent model, VAE included). Training time is read from each run's ``metrics.jsonl``: every
record covers the steps since the previous one at ``samples_per_s``, so a window took
``steps x batch / samples_per_s`` seconds of wall time on all ranks together (validation and
process start-up are not counted). CPU seconds are that wall time times the number of ranks
(each demo rank runs one thread).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hpc_seaice.runtime.checkpoint import complete_checkpoints


def training_seconds(run_dir: str | Path) -> list[tuple[int, float]]:
    """``(step, cumulative training wall seconds)`` at every logged step of a run."""
    run_dir = Path(run_dir)
    batch = int(yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["batch_size"])
    points, previous, total = [], 0, 0.0
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "samples_per_s" not in record or record["step"] <= previous:
            continue  # a validation-only record, or a step logged again after a resume
        total += (record["step"] - previous) * batch / record["samples_per_s"]
        previous = record["step"]
        points.append((previous, total))
    return points


def total_training_seconds(run_dir: str | Path) -> float:
    points = training_seconds(run_dir)
    return points[-1][1] if points else 0.0


def checkpoint_at_cost(run_dir: str | Path, budget_s: float) -> tuple[int, float] | None:
    """The latest kept checkpoint whose training time fits in ``budget_s``: ``(step, seconds)``.

    None when the run's first kept checkpoint already cost more than the budget.
    """
    run_dir = Path(run_dir)
    kept = {int(p.name.removeprefix("step_")) for p in complete_checkpoints(run_dir)}
    best = None
    for step, seconds in training_seconds(run_dir):
        if step in kept and seconds <= budget_s:
            best = (step, seconds)
    return best
