"""Edges of the fault handling found by trying to break it: damaged lock records, scratch paths.

Each was a traceback (or silently deleted a user's files) before; each is now a take-over or one
line with exit code 2.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from hpc_seaice.cli import main
from hpc_seaice.train.runlock import LOCK_NAME, RunLock

OLD = 60.0  # seconds: older than the grace a lock file being written gets


@pytest.mark.parametrize(
    "record",
    [
        {"host": "HOST", "pid": "abc"},  # int('abc'): ValueError
        {"host": "other-host", "pid": 5, "time": "yesterday"},  # float('yesterday') in the message
        {"host": "HOST", "pid": 2**40},  # os.kill: OverflowError
        {"host": "HOST", "pid": 1.5},  # int(1.5) == 1, always alive: refused for ever
        {"host": "HOST", "pid": None},
        [1, 2],
    ],
)
def test_a_damaged_lock_record_is_taken_over_like_a_torn_one(tmp_path, record):
    text = json.dumps(record).replace("HOST", socket.gethostname())
    path = tmp_path / LOCK_NAME
    path.write_text(text)
    os.utime(path, (time.time() - OLD, time.time() - OLD))
    lock = RunLock(tmp_path)
    lock.acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


def _sample(capsys, out, *extra: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["sample", "--run", str(out.parent / "no-run"), "--num", "1", "--out", str(out), *extra])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_sample_never_deletes_a_scratch_path_that_is_not_its_own(tmp_path, capsys):
    """``<out>.parts`` is emptied and removed by sample: a user's folder or file there is refused."""
    out = tmp_path / "s.nc"
    parts = tmp_path / "s.nc.parts"
    parts.mkdir()
    (parts / "notes.txt").write_text("mine")
    code, err = _sample(capsys, out)
    assert code == 2 and len(err) == 1 and f"{parts} holds notes.txt" in err[0], err
    assert (parts / "notes.txt").read_text() == "mine"

    (parts / "notes.txt").unlink()
    parts.rmdir()
    parts.write_text("a file")  # was: FileExistsError traceback after loading the model
    code, err = _sample(capsys, out)
    assert code == 2 and len(err) == 1 and f"{parts} is needed as a scratch folder" in err[0], err

    parts.unlink()
    parts.mkdir()
    (parts / "rank00000.npz").write_bytes(b"left by a crashed sample")  # ours: passes this check
    code, err = _sample(capsys, out)
    assert code == 2 and len(err) == 1 and "not a run folder" in err[0], err
