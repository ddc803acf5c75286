"""Compute accounting of the demo: training seconds from metrics.jsonl, the equal-cost checkpoint."""

import json
import shutil

import pytest
import yaml

from hpc_seaice.demo_compute import checkpoint_at_cost, total_training_seconds, training_seconds


@pytest.fixture
def run(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"train": {"batch_size": 8}}))
    records = [
        {"step": 10, "loss": 1.0, "samples_per_s": 8.0},  # 10 steps x 8 samples at 8/s: 10 s
        {"step": 10, "val_loss": 0.5},  # validation-only record: no time
        {"step": 20, "loss": 0.9, "samples_per_s": 4.0},  # 20 s more
        {"step": 20, "loss": 0.9, "samples_per_s": 4.0},  # logged again after a resume: not twice
        {"step": 30, "loss": 0.8, "samples_per_s": 16.0},  # 5 s more
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for step in (10, 20, 30):
        folder = tmp_path / "checkpoints" / f"step_{step:08d}"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text("{}")  # a completely written checkpoint
    return tmp_path


def test_training_seconds_add_up_the_logged_windows(run):
    assert training_seconds(run) == [(10, 10.0), (20, 30.0), (30, 35.0)]
    assert total_training_seconds(run) == 35.0


def test_checkpoint_at_cost_is_the_latest_that_fits(run):
    assert checkpoint_at_cost(run, 31.0) == (20, 30.0)
    assert checkpoint_at_cost(run, 100.0) == (30, 35.0)
    assert checkpoint_at_cost(run, 5.0) is None
    shutil.rmtree(run / "checkpoints" / "step_00000020")  # pruned: not available
    assert checkpoint_at_cost(run, 31.0) == (10, 10.0)
