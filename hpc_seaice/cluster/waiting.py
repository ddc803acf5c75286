"""Waiting for submitted jobs: until they end, cannot start, or the caller's deadline passes.

``hpc-seaice submit --wait`` and the cluster benchmarks share :func:`watch`. A job that SLURM keeps
PENDING for a reason that does not pass by itself (see :mod:`hpc_seaice.cluster.pending`) is reported
once that reason has held for ``grace_s`` seconds (SLURM re-evaluates reasons on every scheduling
pass; a node that comes back within the grace period is not reported). Nothing here cancels a job:
the caller decides (``submit --wait`` leaves it queued and says how to remove it; the benchmarks
cancel it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hpc_seaice.cluster import accounting
from hpc_seaice.cluster.pending import cannot_start, describe, queue_reasons
from hpc_seaice.cluster.submitted import Submitted

# submitit's list of states in which a job may still run (a requeued job passes through them)
INCOMPLETE_STATES = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED", ""}
CANNOT_START_GRACE_S = 15.0


@dataclass
class JobEnd:
    """How waiting for one job ended."""

    state: str  # SLURM's final state; or the state it still had when we stopped waiting
    reason: str = ""  # squeue's reason, when it was still queued
    note: str = ""  # one line when it did not end by itself (cannot start, deadline passed)

    @property
    def ended(self) -> bool:
        return self.state not in INCOMPLETE_STATES


def job_state(item: Submitted) -> str:
    """The job's SLURM state from its own sacct record (by identity: :mod:`hpc_seaice.cluster.accounting`);
    "" when sacct does not know it yet."""
    return accounting.job_state(item.identity)


def watch(
    submitted: list[Submitted],
    poll_s: float = 1.0,
    grace_s: float = CANNOT_START_GRACE_S,
    deadline: float | None = None,
) -> dict[str, JobEnd]:
    """Poll until every job has ended, cannot start, or ``deadline`` (``time.time()``) passed."""
    pending = {item.job.job_id: item for item in submitted}
    ends: dict[str, JobEnd] = {}
    blocked_since: dict[str, float] = {}
    while pending:
        queued = []
        for job_id, item in list(pending.items()):
            state = job_state(item)
            if state not in INCOMPLETE_STATES:
                ends[job_id] = JobEnd(state)
                del pending[job_id]
            elif state in ("PENDING", ""):
                queued.append(job_id)
        now = time.time()
        reasons = queue_reasons(queued) if queued else {}
        for job_id in queued:
            state, reason = reasons.get(job_id, ("", ""))
            if not cannot_start(reason):
                blocked_since.pop(job_id, None)
                continue
            if now - blocked_since.setdefault(job_id, now) >= grace_s:
                ends[job_id] = JobEnd(state or "PENDING", reason, describe(job_id, state, reason))
                del pending[job_id]
        if pending and deadline is not None and now >= deadline:
            reasons = queue_reasons(list(pending))
            for job_id in list(pending):
                state, reason = reasons.get(job_id, (job_state(pending[job_id]) or "UNKNOWN", ""))
                why = f" ({reason})" if reason and reason != "None" else ""
                ends[job_id] = JobEnd(state, reason, f"job {job_id}: stopped waiting: still {state}{why}")
                del pending[job_id]
        if pending:
            time.sleep(poll_s)
    return ends


def wait_for(submitted: list[Submitted], poll_s: float = 1.0, grace_s: float = CANNOT_START_GRACE_S) -> int:
    """Wait until every job has ended (requeues included) or cannot start; 0 when all finished training."""
    ends = watch(submitted, poll_s, grace_s)
    failures = 0
    for item in submitted:
        end = ends[item.job.job_id]
        if not end.ended:  # cannot start: one line, the job stays queued
            failures += 1
            print(f"{end.note}; it stays queued (scancel {item.job.job_id} removes it)", flush=True)
            continue
        ok, detail = task_outcomes(item)
        if end.state != "COMPLETED" or not ok:
            failures += 1
            print(f"job {item.job.job_id}: {end.state}; run dir {item.run_dir}", flush=True)
            print(detail, flush=True)
            print(f"  logs: {item.log_path(0, 'out')} and {item.log_path(0, 'err')}", flush=True)
        else:
            print(f"job {item.job.job_id}: COMPLETED; run dir {item.run_dir}", flush=True)
    return 1 if failures else 0


def task_outcomes(item: Submitted) -> tuple[bool, str]:
    """Whether every task wrote a success result, and a description of the failures."""
    from submitit.core import utils as submitit_utils

    problems = []
    for index in range(item.job.num_tasks):
        path = item.job.task(index).paths.result_pickle
        if not path.exists():
            problems.append(f"  task {index}: no result (killed, or interrupted without requeue)")
            continue
        outcome, payload = submitit_utils.pickle_load(path)
        if outcome != "success":
            text = str(payload).strip().splitlines()
            problems.append(f"  task {index}: " + "\n    ".join(text[-15:]))
    return not problems, "\n".join(problems)
