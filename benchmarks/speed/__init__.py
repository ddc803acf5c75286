"""The latent-versus-data-space speed comparison: ``python -m benchmarks.speed``.

``run`` parses the options and writes the results; ``plan``, ``setup`` and ``flops`` say what is
built and counted; ``measure``, ``timing``, ``sweep`` and ``compiled`` time it; ``report`` and
``summary`` write the tables; ``slurm`` runs the whole comparison as one SLURM job.
"""
