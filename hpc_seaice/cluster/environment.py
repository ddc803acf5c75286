"""What a SLURM job knows about itself, and what it leaves in the run folder.

A run folder can be worked on by many jobs: the first submission, every requeue after a
preemption or time-out, a later resubmission, array elements of a sweep. Three append-only JSON
Lines files keep that history, so ``hpc-seaice status`` and a person can reconstruct it:

- ``<run>/jobs.jsonl``: the trainer appends one record per start (job id, hosts, start step);
- ``<run>/slurm/submitted.jsonl``: ``hpc-seaice submit`` appends one record per submitted job
  (job id, resources, log paths), so a job is visible before it starts;
- ``<run>/slurm/requeues.jsonl``: rank 0 of a submitted job appends one record per automatic
  requeue; counting them per job bounds the requeues across job restarts (``--max-requeues``).

Nothing here imports torch: ``status`` and ``submit`` stay fast on a login node.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLURM_FOLDER = "slurm"
SUBMITTED = "submitted.jsonl"
REQUEUES = "requeues.jsonl"
JOBS = "jobs.jsonl"


@dataclass(frozen=True)
class SlurmTask:
    """One task of a SLURM job, read from the variables srun sets."""

    job_id: str  # "123", or "123_4" for element 4 of array job 123 (the form sacct and scontrol take)
    raw_job_id: str  # SLURM_JOB_ID: unique per array element too
    array_job_id: str | None
    array_task_id: str | None
    rank: int
    num_tasks: int
    local_rank: int
    nodelist: str
    num_nodes: int
    restart_count: int  # how many times SLURM has restarted this job (requeues)
    hostname: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def slurm_task(environ: dict[str, str] | None = None) -> SlurmTask | None:
    """The current SLURM task, or None outside a SLURM job step."""
    env = os.environ if environ is None else environ
    raw = env.get("SLURM_JOB_ID")
    if raw is None:
        return None
    array_job = env.get("SLURM_ARRAY_JOB_ID")
    array_task = env.get("SLURM_ARRAY_TASK_ID")
    job_id = f"{array_job}_{array_task}" if array_job and array_task is not None else raw
    return SlurmTask(
        job_id=job_id,
        raw_job_id=raw,
        array_job_id=array_job,
        array_task_id=array_task,
        rank=int(env.get("SLURM_PROCID", 0)),
        num_tasks=int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", 1))),
        local_rank=int(env.get("SLURM_LOCALID", 0)),
        nodelist=env.get("SLURM_JOB_NODELIST", ""),
        num_nodes=int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", 1))),
        restart_count=int(env.get("SLURM_RESTART_COUNT", 0)),
        hostname=socket.gethostname(),
    )


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; a single ``write`` on an O_APPEND file keeps concurrent lines whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": round(time.time(), 3), **record}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every whole JSON line of ``path`` (a line torn by a crash is skipped); [] if missing."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def slurm_folder(run_dir: str | Path) -> Path:
    return Path(run_dir) / SLURM_FOLDER


def requeue_count(run_dir: str | Path, job_id: str) -> int:
    """How many times this job was requeued automatically (persisted in the run folder)."""
    return sum(1 for r in read_records(slurm_folder(run_dir) / REQUEUES) if r.get("job_id") == job_id)


def requeue(job_id: str, timeout_s: float = 60.0) -> None:
    """``scontrol requeue``: the job goes back to the queue with the same id and run folder.

    SLURM then ends this allocation (SIGTERM, SIGKILL after KillWait) and starts the batch script
    again when resources are free, no sooner than the cluster's credential lifetime (120 s by
    default).
    """
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=timeout_s, capture_output=True)
