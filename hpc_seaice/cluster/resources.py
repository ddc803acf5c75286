"""What a training job asks SLURM for, as submitit's sbatch parameters.

Kept apart from submission so that ``--dry-run``, the benchmarks and the tests can build and check
the batch script without a SLURM installation.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_seaice.errors import UserError


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
    def from_options(cls, options: Mapping[str, object]) -> Resources:
        """The resources among ``options`` (e.g. ``vars()`` of parsed ``submit`` options); others are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names and v is not None})  # type: ignore[arg-type]

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
