"""A job as ``submit`` returns it: the submitit job, its config and its place in an array.

Apart from :mod:`~hpc_seaice.cluster.submit` so that :mod:`~hpc_seaice.cluster.waiting`, which
submit uses for ``--wait``, can name it without importing submit back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpc_seaice.cluster.accounting import JobIdentity
from hpc_seaice.cluster.environment import slurm_folder
from hpc_seaice.config import ExperimentConfig

if TYPE_CHECKING:
    from submitit import Job


@dataclass
class Submitted:
    job: Job  # a submitit SlurmJob
    config: ExperimentConfig
    array_index: int | None = None
    since: float | None = None  # time.time() just before sbatch
    work_dir: str = ""  # where sbatch ran (SLURM's WorkDir)
    job_name: str = ""  # the name sbatch was given

    @property
    def identity(self) -> JobIdentity:
        """What tells this job's sacct record from older jobs' with the same id."""
        return JobIdentity(str(self.job.job_id), self.job_name, self.work_dir, submitted=self.since)

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run.dir)

    def log_path(self, task: int = 0, kind: str = "out") -> Path:
        """A task's log through the run folder (for arrays, the same file as submitit's path)."""
        return slurm_folder(self.run_dir) / f"{self.job.job_id}_{task}_log.{kind}"
