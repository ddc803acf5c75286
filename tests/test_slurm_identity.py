"""Job state by identity, not by id alone, without a cluster: a fake ``sacct`` answers with the
records a controller whose id counter was reset keeps (an older job's COMPLETED record with our
job's id), and ``status``, ``submit --wait`` (``waiting.job_state``) and the SLURM benchmarks
(which wait through the same function) must read our job's record, and say that the id is shared.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

import pytest

from hpc_seaice.cli import main
from hpc_seaice.cluster import accounting, waiting
from hpc_seaice.cluster.accounting import FIELDS, JobIdentity, select

NAME, WORK = "hpc-seaice-r", "/home/me/project"


def record(state: str, submit: float, name: str = NAME, work: str = WORK, job: str = "5") -> dict[str, str]:
    when = datetime.datetime.fromtimestamp(submit).isoformat(timespec="seconds")
    values = {"JobID": job, "JobIDRaw": job, "State": state, "Start": when, "End": "Unknown", "Elapsed": "00:01:00"}
    return values | {"NodeList": "n1", "Submit": when, "JobName": name, "WorkDir": work}


def line(values: dict[str, str]) -> str:
    return "|".join(values[field] for field in FIELDS)


@pytest.fixture
def fake_sacct(tmp_path, monkeypatch):
    """``sacct`` on PATH printing ``answer.txt`` and recording its arguments in ``args.txt``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "sacct"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/args.txt"\ncat "{tmp_path}/answer.txt"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(accounting, "_told", set())

    def answer(*records: dict[str, str]) -> Path:
        (tmp_path / "answer.txt").write_text("".join(line(r) + "\n" for r in records))
        return tmp_path / "args.txt"

    return answer


def test_the_older_job_with_our_id_is_not_ours_and_the_shared_id_is_said():
    now = time.time()
    old = record("COMPLETED", now - 86400 * 300, name="hpc-seaice-other")
    ours = record("PENDING", now + 1)
    identity = JobIdentity("5", NAME, WORK, submitted=now)
    chosen, note = select([old, ours], identity)
    assert chosen is ours and "2 records with this id, 1 of other jobs" in note and NAME in note
    chosen, note = select([old], identity)  # ours not recorded yet: nothing, never the old one
    assert chosen is None and "none of them" in note
    requeued = record("RUNNING", now + 60)  # a requeue: two records of our own job, the newest counts
    assert select([ours, requeued], identity) == (requeued, "")
    # Only the time is known (an old submission record): the old job is still told apart by it.
    assert select([old, ours], JobIdentity("5", submitted=now))[0] is ours
    # A job seen only through a trainer start: submitted before it started.
    assert select([ours, record("COMPLETED", now + 7200)], JobIdentity("5", started=now + 30))[0] is ours
    # Same name and time but another folder: another project's job.
    assert select([record("COMPLETED", now + 2, work="/elsewhere")], identity)[0] is None


def test_submit_wait_reads_our_record_not_the_older_completed_one(fake_sacct, capsys):
    now = time.time()
    identity = JobIdentity("5", NAME, WORK, submitted=now)
    args = fake_sacct(record("COMPLETED", now - 86400 * 300, name="hpc-seaice-other"))

    class Item:  # what waiting needs of a submitted job
        pass

    item = Item()
    item.identity = identity
    assert waiting.job_state(item) == ""  # unknown yet: keeps waiting instead of reporting COMPLETED
    fake_sacct(record("COMPLETED", now - 86400 * 300, name="hpc-seaice-other"), record("RUNNING", now + 2))
    assert waiting.job_state(item) == "RUNNING"
    assert "-D" in args.read_text().split() and "-j 5" in args.read_text()  # every record of the id
    err = capsys.readouterr().err
    assert "job 5: sacct holds 2 records with this id, 1 of other jobs" in err


def test_status_shows_our_job_running_not_the_older_job_completed(fake_sacct, tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "slurm").mkdir(parents=True)
    now = time.time()
    submitted = {"time": now, "job_id": "5", "job_name": NAME, "work_dir": WORK, "array_index": None}
    (run_dir / "slurm" / "submitted.jsonl").write_text(json.dumps(submitted) + "\n")
    fake_sacct(record("COMPLETED", now - 86400 * 300, name="hpc-seaice-other"), record("RUNNING", now + 3))
    capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    row = next(text for text in out.splitlines() if text.strip().startswith("5 "))
    assert "RUNNING" in row and "COMPLETED" not in row, out
    assert "sacct holds 2 records with this id" in err
