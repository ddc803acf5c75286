"""Replacing a data set only once its successor is complete and checked.

A new data set is written into a temporary folder beside the target (same file system, so every
move is a rename). Only when it is complete and passes the checks of ``data verify`` are the old
set's files moved aside and the new ones moved in, the manifest last; then the old files go. A
failure at any earlier moment (bad input found late, a full disk, Ctrl-C, SIGTERM from ``scancel``
or a time limit: see :func:`terminate_as_exit`), or a failed rename
during the swap itself, leaves the old data set as it was; what else a user keeps in the target
folder is never touched. Only a SIGKILL or power loss in the middle of the renames can leave the
old files in ``.<name>.old-<pid>`` beside the target.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpc_seaice.data.format.manifest import MANIFEST_NAME
from hpc_seaice.data.format.shards import _is_dataset_file
from hpc_seaice.data.format.verify import verify_dataset
from hpc_seaice.errors import UserError

STAGING = ".tmp-convert-"


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM becomes ``SystemExit(143)`` inside the block, so clean-up code runs on the way out.

    By default SIGTERM ends the process at once, which would leave a staging folder (possibly
    gigabytes) beside the target until the next conversion. Only in the main thread (where
    Python runs signal handlers); the previous handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_dir(out: Path) -> Path:
    """A fresh temporary folder beside ``out``; those of earlier conversions that died are removed.

    The folder is named by host and pid: on a shared file system a conversion running on another
    node is not mistaken for a dead one (its pid means nothing here) and keeps its folder.
    """
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create its folder ({exc.strerror})") from None
    prefix = f".{out.name}{STAGING}{socket.gethostname()}-"  # pids are checked on this host only
    for old in parent.glob(f"{prefix}*"):
        pid = old.name.removeprefix(prefix)
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = parent / f"{prefix}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
    except OSError as exc:  # a read-only parent folder, a file in the way
        raise UserError(f"{out}: cannot create the temporary folder {tmp} beside it ({exc.strerror})") from None
    return tmp


def swap_in(tmp: Path, out: Path) -> None:
    """Check the complete set in ``tmp``, then make it the data set at ``out``."""
    verify_dataset(tmp, progress=False, hashes=True, samples_per_shard=4)
    out.mkdir(parents=True, exist_ok=True)
    old = [p for p in out.iterdir() if _is_dataset_file(p.name)]
    backup = tmp.parent / f".{out.name}.old-{os.getpid()}"
    backup.mkdir(exist_ok=True)
    moved_old: list[str] = []
    moved_new: list[str] = []
    try:
        for path in old:
            os.replace(path, backup / path.name)
            moved_old.append(path.name)
        for path in sorted(tmp.iterdir(), key=lambda p: p.name == MANIFEST_NAME):  # the manifest last
            os.replace(path, out / path.name)
            moved_new.append(path.name)
    except BaseException:  # a failed rename or Ctrl-C half-way: put the old set back as it was
        for name in moved_new:
            os.replace(out / name, tmp / name)
        for name in moved_old:
            os.replace(backup / name, out / name)
        backup.rmdir()
        raise
    shutil.rmtree(backup, ignore_errors=True)
    tmp.rmdir()
