"""Benchmarks as SLURM jobs: submit through ``hpc-seaice submit``'s own code, wait, report.

Every benchmark job is a :class:`hpc_seaice.cluster.job.TrainingJob` submitted by
:func:`hpc_seaice.cluster.submit.submit` (no second submission path): the same batch script, srun
tasks, environment, log files in ``<run>/slurm/`` and records that ``hpc-seaice status RUN`` reads.
Only the entry differs (e.g. the trainer with an all-reduce probe around it). Waiting uses
:func:`hpc_seaice.cluster.waiting.watch`: a job that cannot start is cancelled after the grace period
and reported with SLURM's reason, jobs still queued or running at ``--max-wait`` are cancelled and
reported with their state, and a failed job is reported with its state and log; the caller marks
them in its table. Nothing waits forever.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.common import REPO_ROOT
from hpc_seaice.cluster.environment import JOBS, read_records
from hpc_seaice.cluster.resources import Resources
from hpc_seaice.cluster.submit import Submitted, submit
from hpc_seaice.cluster.waiting import CANNOT_START_GRACE_S, task_outcomes, watch
from hpc_seaice.config import ExperimentConfig
from hpc_seaice.errors import UserError


@dataclass
class BenchJob:
    """One configuration to run as its own SLURM job."""

    name: str
    config: ExperimentConfig
    resources: Resources
    entry: str


@dataclass
class Outcome:
    """How one job went, as the result table shows it."""

    name: str
    job_id: str = ""
    state: str = ""  # SLURM's final state, or the state when we stopped waiting
    ok: bool = False
    note: str = ""  # one line when not ok: cannot start, failed, stopped waiting, sbatch refused
    log: str = ""  # task 0's stdout
    hosts: list[str] = field(default_factory=list)  # where the trainer ran (its jobs.jsonl record)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _repo_on_pythonpath() -> Iterator[None]:
    """sbatch exports the submitting environment: the tasks can then import ``benchmarks``."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), old) if p)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def cluster_name() -> str:
    """SLURM's ClusterName, or "" where scontrol does not answer."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip()
    return ""


def submit_job(job: BenchJob) -> Submitted | Outcome:
    """Submit one configuration; an :class:`Outcome` instead when sbatch refused it."""
    from submitit.core.utils import FailedJobError

    try:
        with _repo_on_pythonpath():
            (submitted,) = submit([job.config], job.resources, max_requeues=0, entry=job.entry)
    except (FailedJobError, UserError) as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        return Outcome(job.name, state="NOT SUBMITTED", note="sbatch refused it: " + " | ".join(lines[-2:]))
    return submitted


def _cancel(job_id: str) -> None:
    subprocess.run(["scancel", job_id], capture_output=True, timeout=60)


def outcome_of(name: str, item: Submitted, state: str, note: str) -> Outcome:
    """The outcome of a job that watch() is done with (ended, cannot start, or out of time)."""
    log = str(item.log_path(0, "out"))
    starts = [r for r in read_records(item.run_dir / JOBS) if str(r.get("slurm_job_id")) == item.job.job_id]
    hosts = list(starts[-1].get("hosts", [])) if starts else []
    if note:
        return Outcome(name, item.job.job_id, state, False, note, log, hosts)
    ok, detail = task_outcomes(item)
    if state == "COMPLETED" and ok:
        return Outcome(name, item.job.job_id, state, True, "", log, hosts)
    first = next((line.strip() for line in detail.splitlines() if line.strip()), "")
    return Outcome(name, item.job.job_id, state, False, f"job {item.job.job_id}: {state}: {first}", log, hosts)


def run_jobs(
    jobs: list[BenchJob],
    *,
    max_concurrent: int = 0,
    max_wait_s: float = 6 * 3600.0,
    poll_s: float = 2.0,
    grace_s: float = CANNOT_START_GRACE_S,
    on_outcome: Callable[[Outcome], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Outcome]:
    """Submit ``jobs`` (at most ``max_concurrent`` in the queue at once, 0 = all), wait, report each.

    ``on_outcome`` is called as each batch finishes, so results are saved while later jobs run.
    """
    deadline = time.time() + max_wait_s
    outcomes: dict[str, Outcome] = {}
    size = max_concurrent if max_concurrent > 0 else max(1, len(jobs))
    for start in range(0, len(jobs), size):
        batch = jobs[start : start + size]
        submitted: list[tuple[str, Submitted]] = []
        for job in batch:
            if time.time() >= deadline:
                result: Submitted | Outcome = Outcome(job.name, state="NOT SUBMITTED", note="--max-wait passed")
            else:
                result = submit_job(job)
            if isinstance(result, Outcome):
                outcomes[job.name] = result
                log(f"{job.name}: {result.note}")
                if on_outcome:
                    on_outcome(result)
                continue
            log(
                f"{job.name}: job {result.job.job_id}, {job.resources.nodes} node(s) x "
                f"{job.resources.ntasks_per_node} task(s); log {result.log_path(0, 'out')}"
            )
            submitted.append((job.name, result))
        if not submitted:
            continue
        ends = watch([item for _, item in submitted], poll_s=poll_s, grace_s=grace_s, deadline=deadline)
        for name, item in submitted:
            end = ends[item.job.job_id]
            if not end.ended:  # cannot start, or still queued/running at --max-wait: never left behind
                _cancel(item.job.job_id)
            outcome = outcome_of(name, item, end.state, end.note)
            outcomes[name] = outcome
            log(f"{name}: {outcome.state}" + (f" - {outcome.note}" if outcome.note else ""))
            if on_outcome:
                on_outcome(outcome)
    return outcomes


def add_resource_arguments(parser: argparse.ArgumentParser, gpus_help: str, cpus_help: str) -> None:
    """The sbatch resources every benchmark job takes (``Resources.from_options`` reads them back)."""
    parser.add_argument("--gpus-per-node", type=int, default=1, help=gpus_help)
    parser.add_argument("--cpus-per-task", type=int, default=0, help=cpus_help)
    for flag in ("partition", "account", "qos", "constraint", "mem"):
        parser.add_argument(f"--{flag}", default="", help="passed to sbatch")
