"""Running training on SLURM clusters.

- :mod:`hpc_seaice.cluster.submit`: ``hpc-seaice submit`` (submitit, one task per GPU, automatic
  requeue on preemption/time-out and resume from the latest checkpoint, job arrays, dry runs), with
  :mod:`~hpc_seaice.cluster.resources` (sbatch parameters), :mod:`~hpc_seaice.cluster.job` (what
  every task runs) and :mod:`~hpc_seaice.cluster.waiting` (``--wait``);
- :mod:`hpc_seaice.cluster.pending`: why a queued job has not started, and whether it ever can;
- :mod:`hpc_seaice.cluster.status`: ``hpc-seaice status RUN_DIR``;
- :mod:`hpc_seaice.cluster.environment`: the job's view of itself and the records it leaves in
  the run folder.

Launch recipes without submitit (srun, one torchrun per node, mpirun) are in ``launch/``.
"""
