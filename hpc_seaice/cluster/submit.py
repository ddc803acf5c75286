"""`hpc-seaice submit`: training on SLURM through submitit, with automatic requeue and resume.

One SLURM task per GPU (``srun``, never torchrun inside the allocation): every task runs
:class:`TrainingJob`, which calls the trainer; the trainer initialises torch.distributed from the
SLURM variables itself. CPU jobs use ``--gpus-per-node 0 --tasks-per-node K``.

Preemption and time limits: SLURM sends USR2 ``--signal-delay-s`` seconds before the end (never
USR1: NCCL uses it) and SIGTERM on preemption. The trainer catches both, every rank agrees at the
next step boundary, a checkpoint is written and it returns ``EXIT_INTERRUPTED``; rank 0 then
requeues the job (``scontrol requeue``, same job id, same run folder), bounded by
``--max-requeues`` counted in ``<run>/slurm/requeues.jsonl``. The requeued job runs the same config
and the trainer resumes from ``<run>/checkpoints/latest``.

Files: submitit's folder is ``<run>/slurm/`` (batch script, pickled job, one log pair per task,
results). An array element's files are in its own run folder: the array is submitted held into a
shared folder, each element's folder is moved into its run folder and linked back, and the array
is released (so element *i* of array *A* logs to ``<run_i>/slurm/A_i_<task>_log.out``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpc_seaice.cluster.environment import (
    EXIT_INTERRUPTED,
    REQUEUES,
    SUBMITTED,
    append_record,
    requeue,
    requeue_count,
    slurm_folder,
    slurm_task,
)
from hpc_seaice.config import ExperimentConfig, config_to_dict, load_config, with_absolute_paths
from hpc_seaice.errors import UserError

DEFAULT_ENTRY = "hpc_seaice.train.trainer:run_training"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
ARRAY_FOLDER = ".slurm-arrays"  # held-array staging folder, next to the run folders
# submitit's list of states in which a job may still run (a requeued job passes through them)
INCOMPLETE_STATES = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED", ""}


# --------------------------------------------------------------------------------------------
# resources -> sbatch parameters


@dataclass
class Resources:
    """What a job asks SLURM for; empty strings and zeros mean "the cluster's default"."""

    nodes: int = 1
    gpus_per_node: int = 1
    tasks_per_node: int = 0  # 0 = one task per GPU
    cpus_per_task: int = 0
    mem: str = ""  # per node, e.g. 64G
    partition: str = ""
    time: str = ""  # [D-]HH:MM:SS, MM:SS or minutes
    account: str = ""
    qos: str = ""
    constraint: str = ""
    signal_delay_s: int = 120  # USR2 this long before the time limit, to checkpoint and requeue
    job_name: str = ""

    @classmethod
    def from_args(cls, args: Any) -> Resources:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: getattr(args, k) for k in names if getattr(args, k, None) is not None})

    @property
    def ntasks_per_node(self) -> int:
        return self.tasks_per_node or self.gpus_per_node

    def validate(self) -> None:
        for key in ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "signal_delay_s"):
            if getattr(self, key) < 0:
                raise UserError(f"--{key.replace('_', '-')} must not be negative, got {getattr(self, key)}")
        if self.nodes < 1:
            raise UserError(f"--nodes must be at least 1, got {self.nodes}")
        if self.ntasks_per_node < 1:
            raise UserError("--gpus-per-node 0 needs --tasks-per-node K (processes per node for a CPU job)")
        if self.mem and not re.fullmatch(r"\d+[KMGT]?", self.mem):
            raise UserError(f"--mem {self.mem!r}: expected a number with an optional K/M/G/T suffix, e.g. 64G")
        if self.time:
            parse_time_minutes(self.time)


def parse_time_minutes(text: str) -> int:
    """A SLURM time limit in whole minutes (rounded up): M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise UserError(f"--time {text!r}: expected minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]")
    days, a, b, c = match.groups()
    numbers = [int(a)] + [int(x) for x in (b, c) if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = int(days) * 86400 + sum(n * f for n, f in zip(numbers, (3600, 60, 1)))
    elif len(numbers) == 3:  # H:M:S
        seconds = numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    elif len(numbers) == 2:  # M:S
        seconds = numbers[0] * 60 + numbers[1]
    else:  # M
        seconds = numbers[0] * 60
    if seconds <= 0:
        raise UserError(f"--time {text!r}: must be positive")
    return -(-seconds // 60)


def sbatch_parameters(res: Resources, job_name: str) -> dict[str, Any]:
    """Keyword arguments for submitit's SLURM executor (the names of its sbatch template)."""
    extra: dict[str, Any] = {}
    if res.mem:
        extra["mem"] = res.mem  # submitit's own `mem` wants GB as a number
    params: dict[str, Any] = {
        "job_name": res.job_name or job_name,
        "nodes": res.nodes,
        "ntasks_per_node": res.ntasks_per_node,
        # No --time: the partition's default limit (submitit would otherwise ask for 5 minutes).
        "time": parse_time_minutes(res.time) if res.time else None,
        "signal_delay_s": res.signal_delay_s,
        "setup": [
            # srun does not set threads per task the way torchrun does; oversubscribed cores are slow
            'export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"',
            "export HDF5_USE_FILE_LOCKING=FALSE",
            "export PYTHONUNBUFFERED=1",
        ],
    }
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.cpus_per_task:
        params["cpus_per_task"] = res.cpus_per_task
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(res, key):
            params[key] = getattr(res, key)
    if extra:
        params["additional_parameters"] = extra
    return params


def submitit_command(folder: Path) -> str:
    """The command srun runs in every task (what ``SlurmExecutor`` puts in its batch script)."""
    return " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])


def sbatch_script(folder: Path, params: dict[str, Any], array_size: int | None = None) -> str:
    """The batch script submitit writes for these parameters (for ``--dry-run``)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = dict(params)
    if array_size is not None:
        params["map_count"] = array_size
    return _make_sbatch_string(command=submitit_command(folder), folder=folder, **params)


# --------------------------------------------------------------------------------------------
# what runs in every task


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
        for sig in STOP_SIGNALS:  # replaces submitit's own USR2 handler, which would requeue on its own
            signal.signal(sig, _raise_early_stop)
        early = ""
        try:
            code = int(_resolve(self.entry)(self.config))
        except _EarlyStop as exc:
            early, code = str(exc), EXIT_INTERRUPTED
        finally:
            for sig in STOP_SIGNALS:  # includes the SIGTERM our own requeue brings
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


# --------------------------------------------------------------------------------------------
# submission


@dataclass
class Submitted:
    job: Any  # submitit.slurm.slurm.SlurmJob
    config: ExperimentConfig
    array_index: int | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run.dir)

    def log_path(self, task: int = 0, kind: str = "out") -> Path:
        """A task's log through the run folder (for arrays, the same file as submitit's path)."""
        return slurm_folder(self.run_dir) / f"{self.job.job_id}_{task}_log.{kind}"


def resolve_configs(config_path: str, overrides: list[str], array: list[str]) -> list[ExperimentConfig]:
    """One config, or one per ``--array`` element (its overrides after the common ones)."""
    elements: list[list[str]] = [[]] if not array else []
    for text in array:
        try:
            elements.append(shlex.split(text))
        except ValueError as exc:
            raise UserError(f"--array element {text!r}: {exc}") from None
        if not elements[-1]:
            raise UserError(
                "--array: an element is empty; give each one its overrides, e.g. 'train.seed=1 run.dir=runs/s1'"
            )
    configs = []
    seen: dict[str, int] = {}
    for index, extra in enumerate(elements):
        cfg = with_absolute_paths(load_config(config_path, [*overrides, *extra]))
        if array and cfg.run.dir in seen:
            raise UserError(
                f"--array elements {seen[cfg.run.dir]} and {index} share run.dir {cfg.run.dir}: "
                "give each element its own run.dir=..."
            )
        seen[cfg.run.dir] = index
        configs.append(cfg)
    return configs


def _array_base(configs: list[ExperimentConfig]) -> Path:
    common = Path(os.path.commonpath([str(Path(c.run.dir).parent) for c in configs]))
    return common / ARRAY_FOLDER / "%j"


def dry_run_text(configs: list[ExperimentConfig], res: Resources, max_requeues: int, is_array: bool) -> str:
    """The batch script that would be submitted, and each resolved config."""
    params = sbatch_parameters(res, _job_name(configs[0]))
    lines = []
    if is_array:
        folder = _array_base(configs)
        params.setdefault("additional_parameters", {})["hold"] = True
        lines.append(
            f"# sbatch script (not submitted): an array of {len(configs)}, submitted held, each element's "
            "folder linked to <run.dir>/slurm, then released"
        )
        lines.append(sbatch_script(folder, params, array_size=len(configs)))
    else:
        folder = slurm_folder(configs[0].run.dir)
        lines.append("# sbatch script (not submitted)")
        lines.append(sbatch_script(folder, params))
    total = res.nodes * res.ntasks_per_node
    lines.append(
        f"# {total} task(s) = {res.nodes} node(s) x {res.ntasks_per_node}, each running hpc_seaice.cluster.submit."
        f"TrainingJob; up to {max_requeues} automatic requeue(s) on USR2 ({res.signal_delay_s} s before the "
        "time limit) or SIGTERM"
    )
    for index, cfg in enumerate(configs):
        head = f"# resolved config{f' of array element {index}' if is_array else ''}: run.dir {cfg.run.dir}"
        lines.append(head)
        lines.append(yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"


def _job_name(cfg: ExperimentConfig) -> str:
    return f"hpc-seaice-{Path(cfg.run.dir).name}"


def _require_slurm() -> None:
    for command in ("sbatch", "srun", "sacct", "scontrol"):
        if shutil.which(command) is None:
            raise UserError(f"'{command}' not found: submit from a SLURM login node (or use --dry-run)")


def submit(
    configs: list[ExperimentConfig],
    res: Resources,
    max_requeues: int = 3,
    *,
    is_array: bool = False,
    entry: str = DEFAULT_ENTRY,
) -> list[Submitted]:
    """Submit one training job, or a job array with one element per config."""
    import submitit

    res.validate()
    if max_requeues < 0:
        raise UserError(f"--max-requeues must not be negative, got {max_requeues}")
    _require_slurm()
    params = sbatch_parameters(res, _job_name(configs[0]))
    # Submitted from inside an allocation, the job would inherit its SLURM_* and rank variables.
    with submitit.helpers.clean_env():
        if not is_array:
            (cfg,) = configs
            executor = submitit.SlurmExecutor(folder=slurm_folder(cfg.run.dir), max_num_timeout=max_requeues)
            executor.update_parameters(**params)
            submitted = [Submitted(executor.submit(TrainingJob(cfg, max_requeues, entry)), cfg)]
        else:
            submitted = _submit_array(configs, params, max_requeues, entry)
    for item in submitted:
        append_record(
            slurm_folder(item.run_dir) / SUBMITTED,
            {
                "job_id": item.job.job_id,
                "array_index": item.array_index,
                "nodes": res.nodes,
                "tasks_per_node": res.ntasks_per_node,
                "gpus_per_node": res.gpus_per_node,
                "max_requeues": max_requeues,
                "stdout": str(item.log_path(0, "out")),
                "stderr": str(item.log_path(0, "err")),
            },
        )
    return submitted


def _submit_array(
    configs: list[ExperimentConfig], params: dict[str, Any], max_requeues: int, entry: str
) -> list[Submitted]:
    """A held job array whose element folders are moved into the run folders before release."""
    import submitit

    base = _array_base(configs)
    params = dict(params)
    params["additional_parameters"] = {**params.get("additional_parameters", {}), "hold": True}
    executor = submitit.SlurmExecutor(folder=base, max_num_timeout=max_requeues)
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(TrainingJob(cfg, max_requeues, entry)) for cfg in configs]
    array_id = jobs[0].job_id.split("_")[0]
    try:
        for job, cfg in zip(jobs, configs):
            staged = job.paths.folder  # <base>/<array>_<i>, holding the pickled job
            target = slurm_folder(cfg.run.dir)
            target.mkdir(parents=True, exist_ok=True)
            for path in staged.iterdir():
                path.rename(target / path.name)
            staged.rmdir()
            staged.symlink_to(target, target_is_directory=True)
        subprocess.run(["scontrol", "release", array_id], check=True, capture_output=True, timeout=60)
    except Exception:
        subprocess.run(["scancel", array_id], capture_output=True, timeout=60)
        raise
    return [Submitted(job, cfg, index) for index, (job, cfg) in enumerate(zip(jobs, configs))]


# --------------------------------------------------------------------------------------------
# waiting


def job_state(job: Any) -> str:
    """The job's SLURM state from sacct (forced refresh); "" when sacct does not know it yet."""
    return str(job.get_info(mode="force").get("State", "")).split(" ")[0].upper()


def wait_for(submitted: list[Submitted], poll_s: float = 1.0) -> int:
    """Wait until every job has ended (requeues included); 0 when all finished training."""
    pending = list(submitted)
    states: dict[str, str] = {}
    while pending:
        for item in list(pending):
            state = job_state(item.job)
            if state not in INCOMPLETE_STATES:
                states[item.job.job_id] = state
                pending.remove(item)
        if pending:
            time.sleep(poll_s)
    failures = 0
    for item in submitted:
        ok, detail = task_outcomes(item)
        state = states[item.job.job_id]
        if state != "COMPLETED" or not ok:
            failures += 1
            print(f"job {item.job.job_id}: {state}; run dir {item.run_dir}", flush=True)
            print(detail, flush=True)
            print(f"  logs: {item.log_path(0, 'out')} and {item.log_path(0, 'err')}", flush=True)
        else:
            print(f"job {item.job.job_id}: COMPLETED; run dir {item.run_dir}", flush=True)
    return 1 if failures else 0


def task_outcomes(item: Submitted) -> tuple[bool, str]:
    """Whether every task wrote a success result, and a description of the failures."""
    from submitit.core import utils as submitit_utils

    problems = []
    for index in range(item.job.num_tasks):
        path = item.job.task(index).paths.result_pickle
        if not path.exists():
            problems.append(f"  task {index}: no result (killed, or interrupted without requeue)")
            continue
        outcome, payload = submitit_utils.pickle_load(path)
        if outcome != "success":
            text = str(payload).strip().splitlines()
            problems.append(f"  task {index}: " + "\n    ".join(text[-15:]))
    return not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# command line


def _print_submitted(submitted: list[Submitted], res: Resources) -> None:
    for item in submitted:
        element = f" (array element {item.array_index})" if item.array_index is not None else ""
        print(
            f"submitted job {item.job.job_id}{element}: {res.nodes} node(s) x {res.ntasks_per_node} task(s), "
            f"{res.gpus_per_node} GPU(s) per node",
            flush=True,
        )
        print(f"  run dir: {item.run_dir}", flush=True)
        print(f"  stdout:  {item.log_path(0, 'out')}", flush=True)
        print(f"  stderr:  {item.log_path(0, 'err')}", flush=True)
    print(f"follow with: hpc-seaice status {submitted[0].run_dir}", flush=True)


def cli_submit(args: Any) -> int:
    is_array = bool(args.array)
    configs = resolve_configs(args.config, list(args.overrides), list(args.array))
    res = Resources.from_args(args)
    res.validate()
    if args.max_requeues < 0:
        raise UserError(f"--max-requeues must not be negative, got {args.max_requeues}")
    if args.dry_run:
        sys.stdout.write(dry_run_text(configs, res, args.max_requeues, is_array))
        return 0
    from submitit.core.utils import FailedJobError

    try:
        submitted = submit(configs, res, args.max_requeues, is_array=is_array)
    except FailedJobError as exc:  # submitit's sbatch call failed; the message is sbatch's stderr
        message = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise UserError("sbatch refused the job: " + " | ".join(message[-3:])) from None
    _print_submitted(submitted, res)
    if not args.wait:
        return 0
    try:
        return wait_for(submitted)
    except KeyboardInterrupt:
        print("stopped waiting; the job(s) keep running (scancel to stop them)", file=sys.stderr)
        return 130


__all__ = [
    "Resources",
    "Submitted",
    "TrainingJob",
    "cli_submit",
    "dry_run_text",
    "parse_time_minutes",
    "resolve_configs",
    "submit",
    "wait_for",
]
