"""`hpc-seaice status RUN_DIR`: which jobs worked on a run, their SLURM state, how far it got.

Job ids come from the run folder itself (``slurm/submitted.jsonl`` written at submission,
``jobs.jsonl`` written by the trainer at every start), so a run is understood from its folder alone,
wherever and however it was launched. States come from ``sacct``, each job's record chosen by its
name, folder and submit time where the submission recorded them (``squeue`` as a fallback); without
a reachable SLURM they are shown as "unknown" and the rest still works. A pending job shows
``squeue``'s reason, and says so when that reason means it cannot start as submitted
(``PartitionConfig``, ``ReqNodeNotAvail``, ``BadConstraints``, ...).
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_seaice.cluster import accounting
from hpc_seaice.cluster.accounting import JobIdentity
from hpc_seaice.cluster.environment import JOBS, REQUEUES, SUBMITTED, read_records, slurm_folder
from hpc_seaice.cluster.pending import cannot_start, queue_reasons

SQUEUE_FIELDS = ("JobID", "JobIDRaw", "State", "Start", "End", "Elapsed", "NodeList")  # sacct's names


@dataclass
class JobStatus:
    job_id: str
    state: str = "unknown"
    start: str = ""
    end: str = ""
    elapsed: str = ""
    nodes: str = ""
    starts: int = 0  # trainer starts recorded in jobs.jsonl
    requeues: int = 0  # automatic requeues recorded in slurm/requeues.jsonl
    reason: str = ""  # squeue's reason while it is pending
    raw_ids: set[str] = field(default_factory=set)


def _run(command: list[str], timeout_s: float = 20.0) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def query_states(identities: list[JobIdentity]) -> tuple[dict[str, dict[str, str]], str]:
    """SLURM's view of the jobs, keyed by both JobID (``123_4``) and JobIDRaw; and the source used.

    sacct's record of each job is chosen by its identity (:mod:`hpc_seaice.cluster.accounting`):
    an older job with the same id (a cluster whose id counter was reset) is not taken for it.
    """
    if not identities:
        return {}, "none"
    job_ids = [identity.job_id for identity in identities]
    records = accounting.query(job_ids)
    if records is not None:
        info: dict[str, dict[str, str]] = {}
        for identity in identities:
            record, note = accounting.select(records, identity)
            accounting.tell_once(note)
            if record:
                info[identity.job_id] = info[record["JobID"]] = info[record["JobIDRaw"]] = record
        return info, "sacct"
    out = _run(["squeue", "-h", "-o", "%i|%A|%T|%S|%M|%N", "-j", ",".join(job_ids)])
    if out is not None:
        info = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == 6:
                values = dict(zip(SQUEUE_FIELDS, (parts[0], parts[1], parts[2], parts[3], "", parts[4], parts[5])))
                info[parts[0]] = info[parts[1]] = values
        return info, "squeue"
    return {}, "unreachable"


def last_metrics(run_dir: Path, tail_bytes: int = 65536) -> dict[str, Any] | None:
    """The last record of ``metrics.jsonl`` that has a step (read from the end: the file can be big)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - tail_bytes))
        lines = handle.read().decode(errors="replace").splitlines()
    if size > tail_bytes:
        lines = lines[1:]  # probably cut in the middle
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            return record
    return None if size <= tail_bytes else last_metrics(run_dir, tail_bytes * 16)


def last_checkpoint(run_dir: Path) -> str:
    pointer = run_dir / "checkpoints" / "latest"
    return pointer.read_text().strip() if pointer.is_file() else ""


def collect(run_dir: Path) -> tuple[list[JobStatus], str]:
    """Every job of the run with its state, starts and requeues; and where the states came from."""
    submitted = read_records(slurm_folder(run_dir) / SUBMITTED)
    starts = read_records(run_dir / JOBS)
    requeues = read_records(slurm_folder(run_dir) / REQUEUES)
    identities: dict[str, JobIdentity] = {}
    for record in submitted:
        job = str(record.get("job_id") or "")
        if job and job not in identities:
            when = record.get("time")
            identities[job] = JobIdentity(
                job,
                str(record.get("job_name", "")),
                str(record.get("work_dir", "")),
                submitted=float(when) if isinstance(when, (int, float)) else None,
            )
    for record in starts:
        job = str(record.get("slurm_job_id") or "")
        when = record.get("time")
        if job and job not in identities:  # started by hand or by a launcher: submitted before it started
            identities[job] = JobIdentity(job, started=float(when) if isinstance(when, (int, float)) else None)
    ids = list(identities)
    info, source = query_states(list(identities.values()))
    jobs: dict[str, JobStatus] = {}
    for job_id in ids:
        row = info.get(job_id)
        key = row["JobID"] if row else job_id  # the raw id of an array element maps to "123_4"
        status = jobs.setdefault(key, JobStatus(key))
        status.raw_ids.add(job_id)
        if row:
            status.raw_ids.add(row["JobIDRaw"])
            status.state = row["State"].split(" ")[0]
            status.start, status.end, status.elapsed, status.nodes = (
                row["Start"],
                row["End"],
                row["Elapsed"],
                row["NodeList"],
            )
    waiting = [job.job_id for job in jobs.values() if job.state == "PENDING"]
    reasons = queue_reasons(waiting) if waiting else {}
    for job_id in waiting:
        jobs[job_id].reason = reasons.get(job_id, ("", ""))[1]
    for status in jobs.values():
        status.starts = sum(1 for r in starts if str(r.get("slurm_job_id")) in status.raw_ids)
        status.requeues = sum(1 for r in requeues if str(r.get("job_id")) in status.raw_ids)
    return list(jobs.values()), source


def format_status(run_dir: Path) -> str:
    jobs, source = collect(run_dir)
    local = [r for r in read_records(run_dir / JOBS) if not r.get("slurm_job_id")]
    lines = [f"run dir: {run_dir}"]
    if not jobs and not local:
        lines.append("jobs: none recorded (no slurm/submitted.jsonl or jobs.jsonl)")
    elif not jobs:
        lines.append("SLURM jobs: none")
    else:
        note = {"sacct": "", "squeue": " (from squeue: sacct unavailable)"}.get(
            source, " (SLURM not reachable: states unknown)"
        )
        lines.append(f"jobs{note}:")
        for job in jobs:
            when = f"started {job.start}" if job.start and job.start != "Unknown" else "not started"
            if job.reason and job.reason != "None":
                meaning = cannot_start(job.reason)
                when += f" (cannot start: {job.reason}: {meaning})" if meaning else f" (waiting: {job.reason})"
            if job.end and job.end != "Unknown":
                when += f", ended {job.end}"
            extra = f", {job.elapsed}" if job.elapsed else ""
            nodes = f" on {job.nodes}" if job.nodes and job.nodes not in ("None assigned", "(null)") else ""
            lines.append(
                f"  {job.job_id:<12} {job.state:<11} {when}{extra}{nodes}; "
                f"trainer starts {job.starts}, automatic requeues {job.requeues}"
            )
    if local:
        lines.append("trainer starts outside SLURM:")
        for record in local:
            when = datetime.datetime.fromtimestamp(float(record.get("time", 0)), datetime.timezone.utc)
            lines.append(
                f"  {when:%Y-%m-%d %H:%M:%S} UTC  {record.get('launcher', '?')}, {record.get('world_size', '?')} "
                f"rank(s) on {', '.join(record.get('hosts') or ['?'])}, from step {record.get('start_step', '?')}"
            )
    metrics = last_metrics(run_dir)
    if metrics is None:
        lines.append("last step: none logged yet (no metrics.jsonl)")
    else:
        loss = f", loss {metrics['loss']:.5g}" if isinstance(metrics.get("loss"), (int, float)) else ""
        lines.append(f"last step: {metrics['step']}{loss}")
    checkpoint = last_checkpoint(run_dir)
    lines.append(f"last checkpoint: {checkpoint or 'none yet'}")
    return "\n".join(lines) + "\n"
