"""A job's SLURM accounting record, chosen by the job's identity, not by its id alone.

Why: job ids are not unique. A cluster whose controller restarted its id counter (a re-created
test cluster, a reinstalled controller) keeps the records of older jobs with the same ids, and
``sacct -j ID`` then answers with one of them: a job that is still queued was reported COMPLETED
with no result. Every record of an id is asked for (``--duplicates``) and the one of *our* job is
picked by what the project knows about it: the job name and working folder it submitted with,
and when (a record submitted long before we called sbatch, or after a trainer of the job started,
is another job's). When records of other jobs share the id, one line on stderr says so.
A requeued job has several records of its own: the newest is its state.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

FIELDS = ("JobID", "JobIDRaw", "State", "Start", "End", "Elapsed", "NodeList", "Submit", "JobName", "WorkDir")
CLOCK_SLACK_S = 120.0  # the controller's clock against ours (its Submit times, our submission time)


@dataclass(frozen=True)
class JobIdentity:
    """What identifies one job beyond its id; each part is checked only when known."""

    job_id: str
    name: str = ""  # the job name we gave sbatch
    work_dir: str = ""  # the folder sbatch ran in (SLURM's WorkDir)
    submitted: float | None = None  # time.time() just before sbatch: the job was submitted after it
    started: float | None = None  # a trainer of the job started then: the job was submitted before it


def _when(text: str) -> float | None:
    """A SLURM timestamp (``2024-05-01T12:00:00``, the controller's local time) in seconds, if any."""
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:  # "Unknown", "None", ""
        return None


def parse_records(text: str) -> list[dict[str, str]]:
    """``sacct -P -n -o FIELDS`` output as one dict per line (lines of another width are skipped)."""
    records = []
    for line in text.splitlines():
        values = line.split("|")
        if len(values) == len(FIELDS):
            records.append(dict(zip(FIELDS, values)))
    return records


def is_ours(record: dict[str, str], identity: JobIdentity) -> bool:
    """Whether ``record`` can be the job ``identity`` describes."""
    if identity.name and record.get("JobName") and record["JobName"] != identity.name:
        return False
    if identity.work_dir and record.get("WorkDir"):
        if os.path.normpath(record["WorkDir"]) != os.path.normpath(identity.work_dir):
            return False
    submit = _when(record.get("Submit", ""))
    if submit is not None:
        if identity.submitted is not None and submit < identity.submitted - CLOCK_SLACK_S:
            return False
        if identity.started is not None and submit > identity.started + CLOCK_SLACK_S:
            return False
    return True


def select(records: Iterable[dict[str, str]], identity: JobIdentity) -> tuple[dict[str, str] | None, str]:
    """Our job's newest record among ``records`` (None when sacct has none of it yet), and a note
    ("" unless records of other jobs carry the same id)."""
    same_id = [r for r in records if identity.job_id in (r.get("JobID"), r.get("JobIDRaw"))]
    ours = [r for r in same_id if is_ours(r, identity)]
    ours.sort(key=lambda r: _when(r.get("Submit", "")) or 0.0)  # stable: sacct's order among equal times
    chosen = ours[-1] if ours else None
    others = len(same_id) - len(ours)
    if not others:
        return chosen, ""
    which = f"the one submitted {chosen['Submit']}" if chosen else "none of them (ours is not recorded yet)"
    described = ", ".join(f"{k} {v}" for k, v in (("name", identity.name), ("folder", identity.work_dir)) if v)
    return chosen, (
        f"job {identity.job_id}: sacct holds {len(same_id)} records with this id, {others} of other jobs (were the "
        f"cluster's job ids reset?); using {which}, matched by submit time{', ' + described if described else ''}"
    )


def query(job_ids: list[str], timeout_s: float = 20.0) -> list[dict[str, str]] | None:
    """Every accounting record of these ids (``--duplicates``: older jobs with the same id too);
    None when sacct is missing or fails."""
    if not job_ids or shutil.which("sacct") is None:
        return None if job_ids else []
    command = ["sacct", "-X", "-D", "-n", "-P", "-o", ",".join(FIELDS), "-j", ",".join(job_ids)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_records(proc.stdout) if proc.returncode == 0 else None


_told: set[str] = set()


def tell_once(note: str) -> None:
    """Print a note about shared ids on stderr once per process (a wait polls many times)."""
    if note and note not in _told:
        _told.add(note)
        print(f"hpc-seaice: {note}", file=sys.stderr, flush=True)


def job_state(identity: JobIdentity) -> str:
    """Our job's SLURM state (upper case, first word); "" when sacct does not know it yet."""
    records = query([identity.job_id])
    record, note = select(records or [], identity)
    tell_once(note)
    return record["State"].split(" ")[0].upper() if record else ""
