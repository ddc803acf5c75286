"""How every command starts and how its failures become exit codes: one wrapper, one table.

``hpc-seaice`` runs each sub-command through :func:`run_command`. What happened is read from the
exception's type, never from its text:

- :class:`~hpc_seaice.errors.UserError`: one line on stderr (rank 0 only: every rank raises the
  same one), exit code 2;
- :class:`PeerLost` (a collective failed: a rank or the link to it is gone): one line, exit code 1;
- ``KeyboardInterrupt`` (a second Ctrl-C): exit code 130;
- anything else is a bug: its traceback, exit code 1.

A command that joined a process group leaves through
:func:`~hpc_seaice.runtime.distributed.finalize_and_exit`, so its exit code is the command's.
This module does not import torch: ``hpc-seaice data ...`` and ``status`` never load it.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Protocol

from hpc_seaice.errors import PeerLost, UserError

EXIT_OK = 0
EXIT_FAILED = 1  # a bug, or a lost peer
EXIT_USER_ERROR = 2  # one line naming the file, key or value
EXIT_NONFINITE = 4  # too many non-finite training steps in a row
EXIT_INTERRUPTED = os.EX_TEMPFAIL  # 75: a stop request; checkpoint written; re-run the same command to resume
EXIT_CTRL_C = 130  # stopped at once (a second Ctrl-C)

_RANK_VARIABLES = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")


class ProcessGroup(Protocol):
    """What a command needs of a process group: whether it is up, this rank, and the exit path."""

    def is_initialized(self) -> bool: ...

    def rank(self) -> int: ...

    def finalize_and_exit(self, code: int) -> None: ...


_attached: ProcessGroup | None = None


def attach_process_group(group: ProcessGroup) -> None:
    """Called by :mod:`hpc_seaice.runtime.distributed` when it is imported.

    The dependency runs upward by registration, not by import: a command that never loaded the
    runtime (and torch) has no process group, and this module stays importable without torch.
    """
    global _attached
    _attached = group


def _process_group() -> ProcessGroup | None:
    """The attached process group when it is up, else None."""
    return _attached if _attached is not None and _attached.is_initialized() else None


def _rank() -> int:
    """This process's rank, also before (or without) a process group: from the launcher's variables."""
    if (hdist := _process_group()) is not None:
        return hdist.rank()
    for name in _RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def say(name: str, text: str, every_rank: bool = False) -> None:
    """One line on stderr, prefixed with the command (by rank 0 only, unless ``every_rank``)."""
    if every_rank or _rank() == 0:
        print(f"hpc-seaice {name}: {text}", file=sys.stderr, flush=True)


def run_command(name: str, body: Callable[[], int | None]) -> int:
    """Run a command's ``body`` and return its exit code; failures become codes as the module says."""
    try:
        code = int(body() or EXIT_OK)
    except UserError as exc:
        say(name, f"error: {exc}")
        code = EXIT_USER_ERROR
    except PeerLost as exc:
        say(name, f"error: {exc}", every_rank=True)  # each surviving rank says what it saw
        code = EXIT_FAILED
    except KeyboardInterrupt:
        say(name, "interrupted", every_rank=True)
        code = EXIT_CTRL_C
    except Exception:  # noqa: BLE001 - a bug: its traceback, and a failing exit code
        traceback.print_exc()
        code = EXIT_FAILED
    if (hdist := _process_group()) is not None:
        hdist.finalize_and_exit(code)
    return code
