"""The callable every SLURM task of a submitted training job runs, and how it leaves.

One SLURM task per GPU (``srun``, never torchrun inside the allocation): every task runs
:class:`TrainingJob`, which calls the trainer (or another ``entry``, e.g. a benchmark's wrapper
around it); the trainer initialises torch.distributed from the SLURM variables itself.
"""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from hpc_seaice.cluster.environment import (
    REQUEUES,
    append_record,
    requeue,
    requeue_count,
    slurm_folder,
    slurm_task,
)
from hpc_seaice.command import EXIT_INTERRUPTED
from hpc_seaice.config import ExperimentConfig
from hpc_seaice.runtime.stopping import SCHEDULER_SIGNALS

DEFAULT_ENTRY = "hpc_seaice.train.trainer:run_training"


class _EarlyStop(Exception):
    """A stop signal that arrived before the trainer installed its own handlers."""


def _raise_early_stop(signum: int, frame: Any) -> None:
    raise _EarlyStop(signal.Signals(signum).name)


def _log_late_signal(signum: int, frame: Any) -> None:
    print(f"hpc-seaice submit: {signal.Signals(signum).name} after training returned; exiting", flush=True)


def _resolve(entry: str) -> Any:
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def _write_task_result(outcome: str, payload: Any) -> None:
    """Write this task's submitit result file ourselves: the process leaves with ``os._exit``.

    torch 2.13 + gloo can abort during interpreter teardown after all work is done; leaving through
    ``finalize_and_exit`` avoids it, so submitit never gets to write the file after we return.
    """
    from submitit import JobEnvironment
    from submitit.core import utils as submitit_utils

    path = JobEnvironment().paths.result_pickle
    with submitit_utils.temporary_save_path(path) as tmp:
        submitit_utils.cloudpickle_dump((outcome, payload), tmp)


def _latest_name(run_dir: Path) -> str:
    pointer = run_dir / "checkpoints" / "latest"
    return pointer.read_text().strip() if pointer.is_file() else ""


class TrainingJob:
    """The callable every SLURM task runs: train, then finish, requeue, or fail.

    - 0 from the trainer: every task writes its result and leaves through ``finalize_and_exit(0)``.
    - ``EXIT_INTERRUPTED``: rank 0 requeues the job unless ``max_requeues`` automatic requeues of
      this job are recorded already; then it fails with a message saying how to resume.
    - anything else: the task fails (the trainer raised, or returned another code).

    A stop signal that arrives before the trainer has installed its handlers (while importing,
    building the model, loading the checkpoint) counts as an interruption too: nothing was trained
    yet, so requeueing loses nothing.
    """

    def __init__(self, config: ExperimentConfig, max_requeues: int, entry: str = DEFAULT_ENTRY) -> None:
        self.config = config
        self.max_requeues = max_requeues
        self.entry = entry

    def __call__(self) -> dict[str, Any]:
        task = slurm_task()
        if task is None:
            raise RuntimeError("TrainingJob runs inside a SLURM job step (use hpc-seaice submit)")
        run_dir = Path(self.config.run.dir)
        for sig in SCHEDULER_SIGNALS:  # replaces submitit's own USR2 handler, which would requeue on its own
            signal.signal(sig, _raise_early_stop)
        early = ""
        try:
            code = int(_resolve(self.entry)(self.config))
        except _EarlyStop as exc:
            early, code = str(exc), EXIT_INTERRUPTED
        finally:
            for sig in SCHEDULER_SIGNALS:  # includes the SIGTERM our own requeue brings
                signal.signal(sig, _log_late_signal)
        from hpc_seaice.runtime import distributed as hdist

        if code == 0:
            _write_task_result("success", {"exit_code": 0, "job_id": task.job_id, "rank": task.rank})
            hdist.finalize_and_exit(0)
        if code != EXIT_INTERRUPTED:
            raise RuntimeError(f"training returned exit code {code} (job {task.job_id}, rank {task.rank})")
        if early:
            print(f"hpc-seaice submit: {early} before training started (job {task.job_id})", flush=True)
        if task.is_main:
            self._requeue_or_fail(task, run_dir)
        if not early:
            try:  # rank 0 has requeued (or given up) before any task leaves
                hdist.barrier()
            except Exception as exc:  # noqa: BLE001 - leaving anyway
                print(f"hpc-seaice submit: barrier before leaving failed: {exc}", file=sys.stderr, flush=True)
        hdist.finalize_and_exit(EXIT_INTERRUPTED)
        return {}  # not reached

    def _requeue_or_fail(self, task: Any, run_dir: Path) -> None:
        done = requeue_count(run_dir, task.job_id)
        latest = _latest_name(run_dir) or "no checkpoint yet"
        if done >= self.max_requeues:
            message = (
                f"job {task.job_id} interrupted ({latest}); not requeued: {done} automatic requeue(s) "
                f"already (--max-requeues {self.max_requeues}). Submit the same command again to resume."
            )
            print(f"hpc-seaice submit: {message}", file=sys.stderr, flush=True)
            _write_task_result("error", message)
            return
        try:
            requeue(task.job_id)
        except (OSError, subprocess.SubprocessError) as exc:
            # e.g. SLURM is requeueing it already (PreemptMode=REQUEUE); the job state tells.
            stderr = getattr(exc, "stderr", b"") or b""
            print(
                f"hpc-seaice submit: scontrol requeue {task.job_id} failed: {exc} {stderr.decode().strip()}",
                file=sys.stderr,
                flush=True,
            )
            return
        append_record(
            slurm_folder(run_dir) / REQUEUES,
            {
                "job_id": task.job_id,
                "raw_job_id": task.raw_job_id,
                "restart_count": task.restart_count,
                "requeue": done + 1,
                "max_requeues": self.max_requeues,
                "checkpoint": latest,
            },
        )
        print(
            f"hpc-seaice submit: requeued job {task.job_id} ({done + 1}/{self.max_requeues}); it resumes from {latest}",
            flush=True,
        )
