"""The launch recipes in launch/, run for real: torchrun.sh, mpirun.sh (no SLURM needed) and the
sbatch scripts on the single-node SLURM (srun one task per rank; one torchrun per node with the
c10d rendezvous, including the time-limit signal, checkpoint, requeue and resume)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, VENV_BIN, child_env, read_metrics, tiny_diffusion_config, write_config

LAUNCH = ROOT / "launch"


def config(tiny_dataset: Path, tmp_path: Path, steps: int, **train) -> tuple[Path, Path]:
    run_dir = tmp_path / "run"
    data = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": steps, **train})
    return write_config(tmp_path / "c.yaml", data), run_dir


def run_script(command: list[str], env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.distributed
def test_torchrun_script_trains_on_two_processes(tiny_dataset, tmp_path):
    path, run_dir = config(tiny_dataset, tmp_path, 3)
    proc = run_script(["bash", str(LAUNCH / "torchrun.sh"), str(path)], child_env(NPROC="2"))
    assert "2 rank(s) on 1 host(s)" in proc.stdout and "via torchrun" in proc.stdout
    assert [m["step"] for m in read_metrics(run_dir)] == [1, 2, 3]


@pytest.mark.distributed
def test_mpirun_script_trains_on_two_ranks(tiny_dataset, tmp_path):
    if not (VENV_BIN / "mpiexec").exists():
        pytest.fail("mpiexec from the mpich wheel is missing: run make install")
    path, run_dir = config(tiny_dataset, tmp_path, 3)
    env = child_env(NP="2", MPIRUN=str(VENV_BIN / "mpiexec"), PYTHON=sys.executable)
    proc = run_script(["bash", str(LAUNCH / "mpirun.sh"), str(path), "train.seed=2"], env)
    assert "2 rank(s) on 1 host(s)" in proc.stdout and "via mpi" in proc.stdout
    assert [m["step"] for m in read_metrics(run_dir)] == [1, 2, 3]


def sbatch(cluster, *args: str, env: dict | None = None) -> str:
    return cluster.run("sbatch", "--parsable", *args, env=env, timeout=60).stdout.strip().split(";")[0]


@pytest.mark.slurm
def test_srun_sbatch_runs_one_task_per_rank(slurm_cluster, tiny_dataset, tmp_path):
    path, run_dir = config(tiny_dataset, tmp_path, 3)
    log = tmp_path / "job.out"
    job = sbatch(
        slurm_cluster,
        "--gpus-per-node=0",
        "--ntasks-per-node=2",
        "--cpus-per-task=1",
        "--time=10",
        f"--output={log}",
        str(LAUNCH / "slurm" / "srun.sbatch"),
        str(path),
        "train.seed=3",
    )
    assert slurm_cluster.wait_job(job, timeout=150) == "COMPLETED", log.read_text()
    text = log.read_text()
    assert "2 rank(s) on 1 host(s)" in text and "via slurm" in text, text
    assert [m["step"] for m in read_metrics(run_dir)] == [1, 2, 3]


@pytest.mark.slurm
def test_multinode_torchrun_sbatch_forwards_the_time_limit_signal_and_requeues(slurm_cluster, tiny_dataset, tmp_path):
    """One node here (two hosts: the multinode tests); USR2 to the batch shell as with --signal=B:USR2."""
    steps = 16
    path, run_dir = config(tiny_dataset, tmp_path, steps, checkpoint_every=4)
    log = tmp_path / "job.out"
    job = sbatch(
        slurm_cluster,
        "--nodes=1",
        "--gpus-per-node=0",
        "--cpus-per-task=2",
        "--time=10",
        f"--output={log}",
        str(LAUNCH / "slurm" / "multinode_torchrun.sbatch"),
        str(path),
        env=slurm_cluster.env(NPROC_PER_NODE="2", RDZV_PORT="29533"),
    )
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
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(1, steps + 1))
