"""`hpc-seaice submit` and `hpc-seaice status` against a real single-node SLURM (2 CPU tasks, gloo).

The cluster comes from the ``slurm_cluster`` fixtures (tests/conftest_slurm.py). Jobs are real:
sbatch, srun, submitit, the trainer initialising torch.distributed from the SLURM variables, USR2
from ``scancel --signal`` (what SLURM sends before a time limit, and what submitit's
``job._interrupt(timeout=True)`` does), ``scontrol requeue``. Every test checks what the jobs left
in the run folder, not only exit codes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, losses, read_metrics, tiny_diffusion_config, write_config

pytestmark = pytest.mark.slurm

STEPS = 16
CPU_JOB = ("--nodes", "1", "--gpus-per-node", "0", "--tasks-per-node", "2", "--time", "00:10:00")


def job_ids(stdout: str) -> list[str]:
    return re.findall(r"submitted job (\S+?)[:\s]", stdout)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def latest(run_dir: Path) -> str:
    return (run_dir / "checkpoints" / "latest").read_text().strip()


def two_task_config(tiny_dataset: Path, folder: Path, name: str) -> tuple[Path, Path]:
    run_dir = folder / name
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": STEPS, "checkpoint_every": 4})
    return write_config(folder / f"{name}.yaml", config), run_dir


@pytest.fixture(scope="module")
def finished_run(slurm_clusters, tiny_dataset, tmp_path_factory):
    """A 2-task training job submitted with --wait (also the reference for the requeue test)."""
    cluster = slurm_clusters.ensure("local")
    config, run_dir = two_task_config(tiny_dataset, tmp_path_factory.mktemp("submit"), "finished")
    t0 = time.time()
    proc = cluster.hpc_seaice("submit", str(config), *CPU_JOB, "--wait", timeout=180)
    return config, run_dir, proc, time.time() - t0


def test_submitted_two_task_job_trains_to_the_end(finished_run, slurm_cluster):
    config, run_dir, proc, seconds = finished_run
    (job,) = job_ids(proc.stdout)
    assert f"job {job}: COMPLETED" in proc.stdout, proc.stdout
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(1, STEPS + 1))
    assert latest(run_dir) == f"step_{STEPS:08d}"
    (start,) = read_jsonl(run_dir / "jobs.jsonl")
    assert start["slurm_job_id"] == job and start["world_size"] == 2 and start["launcher"] == "slurm"
    log = (run_dir / "slurm" / f"{job}_0_log.out").read_text()
    assert "2 rank(s) on 1 host(s)" in log and "via slurm" in log, log
    assert (run_dir / "slurm" / f"{job}_1_log.out").is_file()
    assert f"stdout:  {run_dir / 'slurm' / f'{job}_0_log.out'}" in proc.stdout
    assert slurm_cluster.state(job) == "COMPLETED"
    print(f"2-task job: {seconds:.1f} s from submission to the end of --wait")


def test_dry_run_prints_the_script_that_was_submitted(finished_run, slurm_cluster):
    config, run_dir, proc, _ = finished_run
    (job,) = job_ids(proc.stdout)
    dry = slurm_cluster.hpc_seaice("submit", str(config), *CPU_JOB, "--dry-run", timeout=60)
    submitted = (run_dir / "slurm" / f"{job}_submission.sh").read_text()
    assert submitted.strip() in dry.stdout
    assert f"dir: {run_dir}" in dry.stdout  # the resolved config follows the script


def test_status_shows_jobs_last_step_and_checkpoint(finished_run, slurm_cluster):
    _, run_dir, proc, _ = finished_run
    (job,) = job_ids(proc.stdout)
    out = slurm_cluster.hpc_seaice("status", str(run_dir), timeout=60).stdout
    assert re.search(rf"^\s+{job}\s+COMPLETED\s", out, re.MULTILINE), out
    assert "trainer starts 1, automatic requeues 0" in out, out
    assert f"last step: {STEPS}," in out and f"last checkpoint: step_{STEPS:08d}" in out, out


def _submit_and_interrupt(cluster, config: Path, run_dir: Path, *extra: str) -> tuple[str, str, str, int]:
    """Submit with --wait, send USR2 once training runs, return (job, stdout, stderr, exit code)."""
    proc = cluster.popen(sys.executable, "-m", "hpc_seaice", "submit", str(config), *CPU_JOB, *extra, "--wait")
    try:
        first = proc.stdout.readline()
        (job,) = job_ids(first) or [None]
        assert job, first + proc.stderr.read()
        deadline = time.time() + 90
        while time.time() < deadline and len(read_jsonl(run_dir / "metrics.jsonl")) < 3:
            time.sleep(0.1)
        assert len(read_jsonl(run_dir / "metrics.jsonl")) >= 3, "training did not start within 90 s"
        cluster.run("scancel", "--signal=USR2", job)  # = submitit's job._interrupt(timeout=True)
        out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    return job, first + out, err, proc.returncode


def test_interrupted_job_is_requeued_and_resumes_without_lost_or_repeated_steps(
    finished_run, slurm_cluster, tiny_dataset, tmp_path
):
    config, run_dir = two_task_config(tiny_dataset, tmp_path, "requeued")
    t0 = time.time()
    job, out, err, code = _submit_and_interrupt(slurm_cluster, config, run_dir)
    assert code == 0, out + err
    assert f"job {job}: COMPLETED" in out
    (requeue,) = read_jsonl(run_dir / "slurm" / "requeues.jsonl")
    resumed_from = int(requeue["checkpoint"].split("_")[1])
    assert 0 < resumed_from < STEPS and requeue["job_id"] == job
    starts = read_jsonl(run_dir / "jobs.jsonl")
    assert [s["slurm_job_id"] for s in starts] == [job, job]  # the same job id, started twice
    assert [s["start_step"] for s in starts] == [0, resumed_from]
    # every step logged once, up to the end; the resumed trajectory is the uninterrupted one
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(1, STEPS + 1))
    assert latest(run_dir) == f"step_{STEPS:08d}"
    reference = losses(finished_run[1])
    resumed = losses(run_dir)
    assert resumed.keys() == reference.keys()
    for step, loss in resumed.items():
        assert loss == pytest.approx(reference[step], rel=1e-5), (step, loss, reference[step])
    log = (run_dir / "slurm" / f"{job}_0_log.out").read_text()
    assert "stop signal (SIGUSR2)" in log and f"requeued job {job} (1/3)" in log
    assert f"resuming from step {resumed_from}" in log
    status = slurm_cluster.hpc_seaice("status", str(run_dir), timeout=60).stdout
    assert "trainer starts 2, automatic requeues 1" in status, status
    print(f"interrupt + requeue + resume: {time.time() - t0:.1f} s")


def test_interrupted_job_past_max_requeues_fails_and_keeps_its_checkpoint(slurm_cluster, tiny_dataset, tmp_path):
    config, run_dir = two_task_config(tiny_dataset, tmp_path, "no-requeue")
    job, out, err, code = _submit_and_interrupt(slurm_cluster, config, run_dir, "--max-requeues", "0")
    assert code == 1, out + err
    assert f"job {job}: FAILED" in out and "not requeued" in out and "--max-requeues 0" in out, out
    stopped = int(latest(run_dir).split("_")[1])
    assert 3 <= stopped < STEPS
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(1, stopped + 1))
    assert len(read_jsonl(run_dir / "jobs.jsonl")) == 1
    assert not (run_dir / "slurm" / "requeues.jsonl").exists()


def test_job_array_runs_each_element_in_its_own_run_folder(slurm_cluster, tiny_dataset, tmp_path):
    config = write_config(
        tmp_path / "array.yaml", tiny_diffusion_config(tiny_dataset, tmp_path / "unused", train={"max_steps": 4})
    )
    runs = [tmp_path / "sweep" / "seed1", tmp_path / "sweep" / "seed2"]
    proc = slurm_cluster.hpc_seaice(
        "submit",
        str(config),
        "--nodes=1",
        "--gpus-per-node=0",
        "--tasks-per-node=1",  # both elements fit the 2 cores at once
        "--time=10",
        "--wait",
        "--array",
        f"train.seed=1 run.dir={runs[0]}",
        f"train.seed=2 run.dir={runs[1]}",
        timeout=180,
    )
    jobs = job_ids(proc.stdout)
    assert len(jobs) == 2 and jobs[0].endswith("_0") and jobs[1].endswith("_1"), proc.stdout
    assert jobs[0].split("_")[0] == jobs[1].split("_")[0]  # one array
    for index, (job, run_dir) in enumerate(zip(jobs, runs)):
        assert f"job {job}: COMPLETED" in proc.stdout
        assert [m["step"] for m in read_metrics(run_dir)] == [1, 2, 3, 4]
        (start,) = read_jsonl(run_dir / "jobs.jsonl")
        assert start["slurm_array_task_id"] == str(index)
        log = run_dir / "slurm" / f"{job}_0_log.out"
        assert "1 rank(s) on 1 host(s)" in log.read_text()  # the element's logs are in its run folder
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["seed"] == index + 1
    assert losses(runs[0]) != losses(runs[1])  # different seeds, different runs
    assert not (tmp_path / "unused").exists()
    status = slurm_cluster.hpc_seaice("status", str(runs[1]), timeout=60).stdout
    assert re.search(rf"^\s+{jobs[1]}\s+COMPLETED\s", status, re.MULTILINE), status


def test_submit_wait_and_status_say_when_a_job_cannot_start(slurm_cluster, tiny_dataset, tmp_path):
    cpus = int(slurm_cluster.run("sinfo", "-h", "-N", "-o", "%c").stdout.split()[0])
    config, run_dir = two_task_config(tiny_dataset, tmp_path, "too-big")
    too_many = ("--nodes", "1", "--gpus-per-node", "0", "--tasks-per-node", str(cpus + 1), "--time", "00:10:00")
    t0 = time.time()
    proc = slurm_cluster.hpc_seaice("submit", str(config), *too_many, "--wait", timeout=120, check=False)
    seconds = time.time() - t0
    (job,) = job_ids(proc.stdout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = [line for line in proc.stdout.splitlines() if "cannot start" in line]
    assert line == (
        f"job {job}: cannot start: PENDING (PartitionConfig): asks for more than the partition allows (nodes, "
        f"CPUs or GPUs per node, tasks, time); it stays queued (scancel {job} removes it)"
    )
    assert seconds < 60, seconds  # the grace period (15 s) and start-up, not a time-out
    status = slurm_cluster.hpc_seaice("status", str(run_dir)).stdout
    assert "PENDING" in status and "not started (cannot start: PartitionConfig: asks for more" in status, status
    # the test clusters' own waiting fails fast with the reason too
    t0 = time.time()
    with pytest.raises(AssertionError, match=r"cannot start: PENDING \(PartitionConfig\)"):
        slurm_cluster.wait_job(job, timeout=300)
    assert time.time() - t0 < 60
    slurm_cluster.run("scancel", job)


def test_cluster_started_under_omp_num_threads_1_gets_every_cpu(slurm_cluster, tmp_path):
    script = str(ROOT / "tests" / "slurm" / "local_cluster.sh")
    subprocess.run(["bash", script, "stop"], check=True, capture_output=True, timeout=120)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # what torchrun sets for its workers, and many profiles
    subprocess.run(["bash", script, "start"], env=env, check=True, capture_output=True, timeout=180)
    (cpus,) = slurm_cluster.run("sinfo", "-h", "-N", "-o", "%c").stdout.split()
    assert int(cpus) == len(os.sched_getaffinity(0))
    log = tmp_path / "two.out"
    sbatch = ("sbatch", "--parsable", "-n", "2", f"--output={log}", "--wrap", "srun hostname")
    job = slurm_cluster.run(*sbatch).stdout.strip()
    assert slurm_cluster.wait_job(job, timeout=120) == "COMPLETED"
    assert len(log.read_text().split()) == 2
