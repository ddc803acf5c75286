"""One training per run folder: the run lock ``<run.dir>/run.lock``.

The rules (who may take a lock, when a left-over one is stale) are those of every lock file of the
project, in :mod:`hpc_seaice.filelock`; a second training of the same folder is refused in one line
naming the holder.
"""

from __future__ import annotations

import os
from pathlib import Path

from hpc_seaice.filelock import FileLock, describe, holder_state

LOCK_NAME = "run.lock"

__all__ = ["LOCK_NAME", "RunLock", "describe", "holder_state"]


class RunLock(FileLock):
    """The lock of one run folder; :meth:`acquire` once, :meth:`release` at the end."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        super().__init__(Path(run_dir) / LOCK_NAME, str(run_dir), "another training runs in this run folder")
