"""Why a queued job has not started, and whether it ever can as submitted.

A job that asks for more than the partition offers (``PartitionConfig``), needs a node that is down
or drained (``ReqNodeNotAvail``) or a feature no node has (``BadConstraints``) stays PENDING with
that reason; SLURM does not reject it. Whoever waits for such a job (``hpc-seaice submit --wait``,
the cluster benchmarks) must notice the reason and say so, or it waits forever. Reasons come from
``squeue`` (``%r``): sacct does not keep the reason of a pending job.
"""

from __future__ import annotations

import shutil
import subprocess

# reason -> what it means for the user; a job pending with one of these will not start as submitted.
# Not here: reasons that pass by themselves (Priority, Resources, PartitionDown for maintenance) and
# holds (a person asked for them).
CANNOT_START = {
    "PartitionConfig": "asks for more than the partition allows (nodes, CPUs or GPUs per node, tasks, time)",
    "ReqNodeNotAvail": "a node it needs is down, drained or reserved",
    "BadConstraints": "no node has the requested features (--constraint) or resources",
    "PartitionNodeLimit": "more nodes than the partition allows",
    "PartitionTimeLimit": "a longer --time than the partition allows",
    "InvalidAccount": "the account is not valid for this user or partition",
    "InvalidQOS": "the QOS is not valid for this user or partition",
    "DependencyNeverSatisfied": "a job it depends on failed",
}


# squeue spells some reasons out in words instead of their name (SLURM 22.05 for a partition whose
# every node is down or drained)
SPELLED_OUT = {"Nodes required for job are DOWN, DRAINED": "ReqNodeNotAvail"}


def reason_code(reason: str) -> str:
    """The reason's name without details: ``ReqNodeNotAvail, UnavailableNodes:n2`` -> ``ReqNodeNotAvail``."""
    text = reason.strip()
    for prefix, code in SPELLED_OUT.items():
        if text.startswith(prefix):
            return code
    return text.split(",")[0].split(" ")[0].strip("()")


def cannot_start(reason: str) -> str:
    """What the reason means when the job cannot start as submitted; "" when it may still start."""
    return CANNOT_START.get(reason_code(reason), "")


def describe(job_id: str, state: str, reason: str) -> str:
    """One line for a job that cannot start: its id, state, SLURM's reason and what it means."""
    meaning = cannot_start(reason)
    return f"job {job_id}: cannot start: {state or 'PENDING'} ({reason}): {meaning or 'see squeue'}"


def queue_reasons(job_ids: list[str], timeout_s: float = 20.0) -> dict[str, tuple[str, str]]:
    """``{job id: (state, reason)}`` for the given jobs that are still in the queue.

    Keyed by the id as given and by the raw id (array elements); {} when squeue is missing or fails.
    """
    if not job_ids or shutil.which("squeue") is None:
        return {}
    command = ["squeue", "-h", "-o", "%i|%A|%T|%r", "-j", ",".join(job_ids)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0:  # e.g. every id has left the queue ("Invalid job id specified")
        return {}
    found: dict[str, tuple[str, str]] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4:
            found[parts[0]] = found[parts[1]] = (parts[2].strip().upper(), parts[3].strip())
    return found
