"""`hpc-seaice submit`: training on SLURM through submitit, with automatic requeue and resume.

The one submission path of the project (the cluster benchmarks submit through :func:`submit` too).
Its parts: :mod:`~hpc_seaice.cluster.resources` (what a job asks for, the sbatch parameters),
:mod:`~hpc_seaice.cluster.job` (what every task runs), this module (submission, arrays),
:mod:`~hpc_seaice.cluster.submitted` (a submitted job) and :mod:`~hpc_seaice.cluster.waiting`
(``--wait``); the command line is :mod:`hpc_seaice.cli.cluster`. One SLURM task per GPU (``srun``,
never torchrun inside the allocation); CPU jobs use ``--gpus-per-node 0 --tasks-per-node K``.

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

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from hpc_seaice.cluster.environment import SUBMITTED, append_record, slurm_folder
from hpc_seaice.cluster.job import DEFAULT_ENTRY, TrainingJob
from hpc_seaice.cluster.resources import Resources, parse_time_minutes, sbatch_parameters, sbatch_script
from hpc_seaice.cluster.submitted import Submitted
from hpc_seaice.cluster.waiting import wait_for
from hpc_seaice.config import ExperimentConfig, config_to_dict, load_config, with_absolute_paths
from hpc_seaice.errors import UserError
from hpc_seaice.runtime.private import check_private

ARRAY_FOLDER = ".slurm-arrays"  # held-array staging folder, next to the run folders


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
        f"# {total} task(s) = {res.nodes} node(s) x {res.ntasks_per_node}, each running hpc_seaice.cluster.job."
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
    for cfg in configs:  # the job unpickles its slurm/ files there, and --wait its results
        if Path(cfg.run.dir).exists():
            check_private(Path(cfg.run.dir), cfg.run.allow_shared_dir)
    _require_slurm()
    params = sbatch_parameters(res, _job_name(configs[0]))
    since, work_dir = time.time(), os.getcwd()
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
        item.since, item.work_dir, item.job_name = since, work_dir, params["job_name"]
        append_record(
            slurm_folder(item.run_dir) / SUBMITTED,
            {
                "job_id": item.job.job_id,
                "job_name": params["job_name"],
                "work_dir": work_dir,
                "time": since,
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


__all__ = [
    "DEFAULT_ENTRY",
    "Resources",
    "Submitted",
    "TrainingJob",
    "dry_run_text",
    "parse_time_minutes",
    "resolve_configs",
    "submit",
    "wait_for",
]
