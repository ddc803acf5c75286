"""Jobs that cannot start, without a cluster: squeue's reasons, `submit --wait`'s and `status`'s
report of them, and the processor count the test clusters size their nodes with.

The real cases (a job pending with ``PartitionConfig`` on the single-node cluster, the cluster
started under ``OMP_NUM_THREADS=1``) are in tests/test_slurm_submit.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, child_env, hpc_seaice

from hpc_seaice.cluster import waiting
from hpc_seaice.cluster.pending import cannot_start, reason_code


@pytest.mark.parametrize(
    ("reason", "blocked"),
    [
        ("PartitionConfig", True),
        ("ReqNodeNotAvail, UnavailableNodes:n2", True),
        ("Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions", True),
        ("BadConstraints", True),
        ("PartitionNodeLimit", True),
        ("Priority", False),
        ("Resources", False),
        ("None", False),
        ("", False),
    ],
)
def test_reasons_that_never_pass_by_themselves(reason, blocked):
    assert bool(cannot_start(reason)) is blocked, (reason, reason_code(reason))


class FakeJob:
    """A submitit job whose sacct state follows a script: one state per poll, the last one repeats."""

    def __init__(self, job_id: str, states: list[str]) -> None:
        self.job_id, self.states, self.num_tasks = job_id, list(states), 1

    def get_info(self, mode: str = "") -> dict[str, str]:
        return {"State": self.states.pop(0) if len(self.states) > 1 else self.states[0]}


class FakeSubmitted:
    def __init__(self, job: FakeJob, run_dir: Path) -> None:
        self.job, self.run_dir = job, run_dir


@pytest.fixture(autouse=True)
def scripted_states(monkeypatch):
    """Each job's state follows its FakeJob script (sacct by identity: tests/test_slurm_identity.py)."""
    monkeypatch.setattr(waiting, "job_state", lambda item: item.job.get_info(mode="force")["State"].upper())

    def log_path(self, task: int = 0, kind: str = "out") -> Path:
        return self.run_dir / f"{self.job.job_id}_{task}_log.{kind}"


@pytest.fixture
def reasons(monkeypatch):
    """squeue's reasons per job id, changeable while a test waits."""
    table: dict[str, str] = {}
    monkeypatch.setattr(waiting, "queue_reasons", lambda ids: {i: ("PENDING", table[i]) for i in ids if i in table})
    return table


def test_watch_reports_a_job_that_cannot_start_after_the_grace_period(reasons, tmp_path):
    reasons.update({"11": "PartitionConfig", "12": "Priority"})
    blocked = FakeSubmitted(FakeJob("11", ["PENDING"]), tmp_path)
    fine = FakeSubmitted(FakeJob("12", ["PENDING"] * 3 + ["RUNNING"] * 3 + ["COMPLETED"]), tmp_path)
    t0 = time.time()
    ends = waiting.watch([blocked, fine], poll_s=0.01, grace_s=0.3)
    assert time.time() - t0 >= 0.3
    assert ends["12"].state == "COMPLETED" and ends["12"].ended and not ends["12"].note
    assert not ends["11"].ended and ends["11"].reason == "PartitionConfig"
    assert ends["11"].note.startswith("job 11: cannot start: PENDING (PartitionConfig): asks for more than")


def test_watch_forgets_a_reason_that_passed_within_the_grace_period(reasons, tmp_path):
    reasons["21"] = "ReqNodeNotAvail, UnavailableNodes:n2"
    job = FakeJob("21", ["PENDING"] * 10 + ["RUNNING", "COMPLETED"])
    original = job.get_info

    def get_info(mode: str = "") -> dict[str, str]:
        if len(job.states) == 5:  # the node came back
            reasons["21"] = "Resources"
        return original(mode)

    job.get_info = get_info
    ends = waiting.watch([FakeSubmitted(job, tmp_path)], poll_s=0.01, grace_s=5.0)
    assert ends["21"].state == "COMPLETED" and not ends["21"].note


def test_watch_stops_at_the_deadline_and_says_what_the_job_waits_for(reasons, tmp_path):
    reasons["31"] = "Resources"
    ends = waiting.watch([FakeSubmitted(FakeJob("31", ["PENDING"]), tmp_path)], poll_s=0.01, deadline=time.time() + 0.2)
    assert ends["31"].state == "PENDING" and ends["31"].note == "job 31: stopped waiting: still PENDING (Resources)"


def test_wait_for_says_so_in_one_line_and_fails(reasons, tmp_path, capsys):
    reasons["41"] = "BadConstraints"
    code = waiting.wait_for([FakeSubmitted(FakeJob("41", ["PENDING"]), tmp_path)], poll_s=0.01, grace_s=0.05)
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert out == [
        "job 41: cannot start: PENDING (BadConstraints): no node has the requested features (--constraint) "
        "or resources; it stays queued (scancel 41 removes it)"
    ]


def fake_slurm_bin(folder: Path, sacct: str, squeue: str) -> dict[str, str]:
    """A PATH whose sacct and squeue print the given lines (the formats status asks for)."""
    folder.mkdir()
    for name, text in (("sacct", sacct), ("squeue", squeue)):
        path = folder / name
        path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{text}'\n")
        path.chmod(0o755)
    return child_env(PATH=f"{folder}:{Path(sys.executable).parent}:/usr/bin:/bin")


def test_status_names_the_reason_a_job_cannot_start(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "slurm").mkdir(parents=True)
    (run_dir / "slurm" / "submitted.jsonl").write_text(json.dumps({"job_id": "77"}) + "\n")
    env = fake_slurm_bin(
        tmp_path / "bin",
        "77|77|PENDING|Unknown|Unknown|00:00:00|None assigned|Unknown|hpc-seaice-run|/w",
        "77|77|PENDING|PartitionConfig",
    )
    out = hpc_seaice("status", str(run_dir), env=env).stdout
    line = next(line for line in out.splitlines() if line.strip().startswith("77"))
    assert "PENDING" in line and "not started (cannot start: PartitionConfig: asks for more than" in line, out

    env = fake_slurm_bin(
        tmp_path / "bin2",
        "77|77|PENDING|Unknown|Unknown|00:00:00|None assigned|Unknown|hpc-seaice-run|/w",
        "77|77|PENDING|Priority",
    )
    out = hpc_seaice("status", str(run_dir), env=env).stdout
    assert "not started (waiting: Priority)" in out and "cannot start" not in out, out


def test_test_clusters_count_processors_whatever_omp_num_threads_says():
    expected = len(os.sched_getaffinity(0))
    script = f"source {ROOT / 'tests' / 'slurm' / 'lib.sh'}; node_cpus"
    for omp in ("1", str(expected + 3)):
        env = {**os.environ, "OMP_NUM_THREADS": omp, "OMP_THREAD_LIMIT": omp}
        proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
        assert int(proc.stdout) == expected, (omp, proc.stdout)
    for name in ("local_cluster.sh", "two_nodes.sh"):  # every node definition uses it
        text = (ROOT / "tests" / "slurm" / name).read_text()
        assert "$(nproc)" not in text and "cpus=$(node_cpus)" in text, name
