"""The launch recipes in launch/, run for real: torchrun.sh, mpirun.sh (no SLURM needed) and the
sbatch scripts on the single-node SLURM (srun one task per rank; one torchrun per node with the
c10d rendezvous, including the time-limit signal, checkpoint, requeue and resume)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    VENV_BIN,
    child_env,
    logged_steps,
    read_metrics,
    run_command,
    tiny_diffusion_config,
    write_config,
)

LAUNCH = ROOT / "launch"


def config(tiny_dataset: Path, tmp_path: Path, steps: int, **train) -> tuple[Path, Path]:
    run_dir = tmp_path / "run"
    data = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": steps, **train})
    return write_config(tmp_path / "c.yaml", data), run_dir


@pytest.mark.distributed
def test_torchrun_script_trains_on_two_processes(tiny_dataset, tmp_path):
    path, run_dir = config(tiny_dataset, tmp_path, 3)
    proc = run_command(["bash", str(LAUNCH / "torchrun.sh"), str(path)], child_env(NPROC="2"), timeout=240)
    assert "2 rank(s) on 1 host(s)" in proc.stdout and "via torchrun" in proc.stdout
    assert logged_steps(run_dir) == [1, 2, 3]


@pytest.mark.distributed
def test_mpirun_script_trains_on_two_ranks(tiny_dataset, tmp_path):
    if not (VENV_BIN / "mpiexec").exists():
        pytest.fail("mpiexec from the mpich wheel is missing: run make install")
    path, run_dir = config(tiny_dataset, tmp_path, 3)
    env = child_env(NP="2", MPIRUN=str(VENV_BIN / "mpiexec"), PYTHON=sys.executable)
    proc = run_command(["bash", str(LAUNCH / "mpirun.sh"), str(path), "train.seed=2"], env, timeout=240)
    assert "2 rank(s) on 1 host(s)" in proc.stdout and "via mpi" in proc.stdout
    assert logged_steps(run_dir) == [1, 2, 3]


@pytest.mark.slurm
def test_srun_sbatch_runs_one_task_per_rank(slurm_cluster, tiny_dataset, tmp_path):
    path, run_dir = config(tiny_dataset, tmp_path, 3)
    log = tmp_path / "job.out"
    options = ("--ntasks-per-node=2", "--cpus-per-task=1")
    job = slurm_cluster.sbatch_launch("srun.sbatch", options, str(path), "train.seed=3", log=log)
    assert slurm_cluster.wait_job(job, timeout=150) == "COMPLETED", log.read_text()
    text = log.read_text()
    assert "2 rank(s) on 1 host(s)" in text and "via slurm" in text, text
    assert logged_steps(run_dir) == [1, 2, 3]


@pytest.mark.slurm
def test_multinode_torchrun_sbatch_forwards_the_time_limit_signal_and_requeues(slurm_cluster, tiny_dataset, tmp_path):
    """One node here (two hosts: the multinode tests); USR2 to the batch shell as with --signal=B:USR2."""
    steps = 16
    path, run_dir = config(tiny_dataset, tmp_path, steps, checkpoint_every=4)
    log = tmp_path / "job.out"
    env = slurm_cluster.env(NPROC_PER_NODE="2", RDZV_PORT="29533")
    options = ("--nodes=1", "--cpus-per-task=2")
    job = slurm_cluster.sbatch_launch("multinode_torchrun.sbatch", options, str(path), log=log, env=env)
    deadline = time.time() + 90
    while time.time() < deadline and not (run_dir / "metrics.jsonl").is_file():
        time.sleep(0.1)
    while time.time() < deadline and len(read_metrics(run_dir)) < 3:
        time.sleep(0.1)
    slurm_cluster.run("scancel", "--batch", "--signal=USR2", job)
    assert slurm_cluster.wait_job(job, timeout=180) == "COMPLETED", log.read_text()
    text = log.read_text()
    assert "2 rank(s) on 1 host(s)" in text and "via torchrun" in text, text
    assert "stop signal (SIGUSR2)" in text and f"requeueing job {job}" in text, text
    starts = [json.loads(line) for line in (run_dir / "jobs.jsonl").read_text().splitlines()]
    assert [s["slurm_job_id"] for s in starts] == [job, job] and starts[1]["start_step"] > 0
    assert logged_steps(run_dir) == list(range(1, steps + 1))
