"""Stopping a run cleanly: a signal or a stop file, acted on by every rank at a step boundary.

SIGTERM (preemption, ``scancel``, torchrun), SIGUSR2 (SLURM's warning before the time limit) and
Ctrl-C are recorded; so is a file named ``STOP`` in the run folder, which rank 0 looks for at each
step boundary (``touch <run.dir>/STOP`` stops a run from anywhere that sees its folder, and
tests stop a run at a known step without racing the clock). The ranks then agree (a collective
flag), write a checkpoint and exit with ``EXIT_INTERRUPTED``; the stop file is removed, so
re-running the same command resumes. Never SIGUSR1: NCCL uses it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

SCHEDULER_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)  # what a batch system sends before it stops a job
STOP_SIGNALS = (*SCHEDULER_SIGNALS, signal.SIGINT)
STOP_FILE = "STOP"


class StopRequest:
    """Records a stop signal or the stop file; the trainer acts on it at the next step boundary.

    A second Ctrl-C (SIGINT) stops at once, without a checkpoint.
    """

    def __init__(self, run_dir: Path | None = None, watch_file: bool = False) -> None:
        self.reason = ""
        self.previous: dict[int, Any] = {}
        self.stop_file = Path(run_dir) / STOP_FILE if run_dir is not None and watch_file else None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.reason == "SIGINT":
            raise KeyboardInterrupt
        if signum == signal.SIGINT and not self.reason:
            # os.write, not print: the signal may land inside a write to stderr (tqdm's bar).
            os.write(2, b"\nhpc-seaice train: Ctrl-C: checkpointing after this step (again: stop at once)\n")
        self.reason = self.reason or signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self) -> int:
        """1 when a stop was asked for (a signal, or the stop file now), else 0."""
        if not self.reason and self.stop_file is not None and self.stop_file.exists():
            self.reason = f"{STOP_FILE} file"
        return int(bool(self.reason))

    @property
    def description(self) -> str:
        """What asked to stop, for the log: ``stop signal (SIGTERM)`` or ``stop file (<run.dir>/STOP)``."""
        if self.reason == f"{STOP_FILE} file":
            return f"stop file ({self.stop_file})"
        return f"stop signal ({self.reason or 'on another rank'})"

    def clear_stop_file(self) -> None:
        """Remove the stop file once acted on, so that re-running the command resumes."""
        if self.stop_file is not None:
            self.stop_file.unlink(missing_ok=True)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader workers leave stop signals to the main process.

    torchrun and SLURM signal the whole process group; a worker killed by SIGTERM/SIGUSR2 would
    make the DataLoader raise mid-step, before the main process can checkpoint.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
