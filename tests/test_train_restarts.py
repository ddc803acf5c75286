"""A bare ``torchrun --max-restarts`` (the README's command, no environment tweaks) survives
several killed workers in a row: each restarted round meets in its own keys of the agent's store."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import ROOT, VENV_BIN, child_env, read_metrics, tiny_diffusion_config, write_config

from hpc_seaice.runtime.checkpoint import latest_checkpoint

pytestmark = pytest.mark.distributed


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.is_file() else []


def _checkpoint_step(run_dir: Path) -> int:
    try:
        folder = latest_checkpoint(run_dir)
    except Exception:  # noqa: BLE001 - being replaced right now
        return 0
    return 0 if folder is None else int(folder.name.split("_")[1])


def test_bare_torchrun_restarts_three_times_in_a_row_and_finishes(tiny_dataset, tmp_path):
    run_dir = tmp_path / "restarts"
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 40, "checkpoint_every": 4})
    path = write_config(tmp_path / "c.yaml", config)
    env = child_env()
    env.pop("TORCH_DISABLE_SHARE_RDZV_TCP_STORE")  # exactly what a user types
    command = [
        str(VENV_BIN / "torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        "--max-restarts=3",
        "-m",
        "hpc_seaice",
        "train",
        str(path),
    ]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: list[int] = []
    killed_at = 0
    try:
        for victim in (1, 0, 1):  # rank 0 too: its run lock is taken over by the restarted rank 0
            deadline = time.time() + 180
            while time.time() < deadline:
                workers = [w for w in _children(proc.pid) if w not in killed]
                if _checkpoint_step(run_dir) > killed_at and len(workers) == 2:
                    break
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                time.sleep(0.05)
            else:
                raise AssertionError("no new checkpoint after the restart")
            killed_at = _checkpoint_step(run_dir)
            assert killed_at < 40, "the run finished before the kill"
            os.kill(workers[victim], signal.SIGKILL)
            killed.append(workers[victim])
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "connectFullMesh" not in err
    assert out.count("hpc-seaice train |") == 4 and out.count("resuming from step") == 3
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(1, 41))  # every step once
    assert latest_checkpoint(run_dir).name == "step_00000040"
    assert not (run_dir / "run.lock").exists()  # released at the end
