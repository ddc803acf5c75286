"""Running training on SLURM clusters.

- :mod:`hpc_seaice.cluster.submit`: ``hpc-seaice submit`` (submitit, one task per GPU, automatic
  requeue on preemption/time-out and resume from the latest checkpoint, job arrays, dry runs);
- :mod:`hpc_seaice.cluster.status`: ``hpc-seaice status RUN_DIR``;
- :mod:`hpc_seaice.cluster.environment`: the job's view of itself and the records it leaves in
  the run folder.

Launch recipes without submitit (srun, one torchrun per node, mpirun) are in ``launch/``.
"""
