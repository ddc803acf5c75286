"""``hpc-seaice submit | status``: training on SLURM through submitit, and where a run stands.

Each imports what it drives when it runs (submitit only for a real submission), so
``hpc-seaice --help`` and ``submit --dry-run`` load neither SLURM tooling nor torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpc_seaice.errors import UserError


def run_submit(args: argparse.Namespace) -> int:
    """Submit (or with ``--dry-run`` print) the job(s); with ``--wait``, the jobs' exit code."""
    from hpc_seaice.cluster.resources import Resources
    from hpc_seaice.cluster.submit import dry_run_text, resolve_configs, submit
    from hpc_seaice.cluster.waiting import wait_for

    is_array = bool(args.array)
    configs = resolve_configs(args.config, list(args.overrides), list(args.array))
    res = Resources.from_options(vars(args))
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
    if not args.wait:
        return 0
    try:
        return wait_for(submitted)
    except KeyboardInterrupt:
        print("stopped waiting; the job(s) keep running (scancel to stop them)", file=sys.stderr)
        return 130


def run_status(args: argparse.Namespace) -> int:
    """Job state, last step and last checkpoint of the run folder ``args.run_dir``."""
    from hpc_seaice.cluster.status import format_status

    run_dir = Path(args.run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {args.run_dir}")
    print(format_status(run_dir), end="", flush=True)
    return 0
