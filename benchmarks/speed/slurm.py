"""The speed comparison (``python -m benchmarks.speed``) on a compute node, as one SLURM job.

    python -m benchmarks.speed.slurm --gpus-per-node 1 --partition gpu --time 01:00:00 -- --full-sampling
    python -m benchmarks.speed.slurm --gpus-per-node 0 --cpus-per-task 8 -- --quick --device cpu

Everything after ``--`` goes to ``benchmarks.speed`` unchanged. The job is submitted by
``hpc-seaice submit``'s code (:mod:`benchmarks.slurm`), one task on one node, and runs
``benchmarks.speed.run.main`` there; its results go to ``benchmarks/results/<cluster name>/`` (SLURM's
ClusterName, or the submitting host's name) unless the arguments after ``--`` name an ``--out``. This
command waits for the job (``--max-wait``) and prints where the results are, or the job's SLURM
state, reason and log when it failed or could not start. ``hpc-seaice status <work>/speed`` follows it.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT
from benchmarks.slurm import BenchJob, add_resource_arguments, cluster_name, run_jobs
from hpc_seaice.cluster.resources import Resources
from hpc_seaice.config import config_from_dict, with_absolute_paths

ENTRY = "benchmarks.speed.slurm:run_speed"
ARGS_FILE = "speed_args.json"


def results_folder() -> Path:
    """``benchmarks/results/<cluster name>``: SLURM's cluster name, or this host's short name."""
    return REPO_ROOT / "benchmarks" / "results" / (cluster_name() or socket.gethostname().split(".")[0])


def run_speed(cfg: Any) -> int:
    """In the job: ``benchmarks.speed.run.main`` with the submitted arguments."""
    from benchmarks.speed import run as speed

    argv = json.loads((Path(cfg.run.dir) / ARGS_FILE).read_text())["argv"]
    print(f"benchmarks.speed {' '.join(argv)} on {socket.gethostname()}", flush=True)
    return int(speed.main(argv) or 0)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    speed_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.slurm", description=__doc__.splitlines()[0])
    add_resource_arguments(p, "GPUs of the job (0: a CPU job)", "CPUs of the job (default: the cluster's)")
    p.add_argument("--time", default="01:00:00", help="time limit (default 01:00:00)")
    p.add_argument("--work", default="runs/speed_slurm", help="job folder, on a file system the node shares")
    p.add_argument("--max-wait", type=float, default=6 * 3600.0, help="seconds to wait for the job (default 6 h)")
    return p.parse_args(own), speed_args


def main(argv: list[str] | None = None) -> int:
    args, speed_args = parse_args(argv)
    run_dir = Path(args.work).resolve() / time.strftime("speed-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    if "--out" not in speed_args:
        speed_args = [*speed_args, "--out", str(results_folder())]
    out = speed_args[speed_args.index("--out") + 1]
    (run_dir / ARGS_FILE).write_text(json.dumps({"argv": speed_args}) + "\n")
    config = with_absolute_paths(config_from_dict({"run": {"dir": str(run_dir)}}))
    res = replace(Resources.from_options(vars(args)), nodes=1, tasks_per_node=1, job_name="bench-speed")
    outcomes = run_jobs([BenchJob("speed", config, res, ENTRY)], max_wait_s=args.max_wait)
    outcome = outcomes["speed"]
    if not outcome.ok:
        print(f"benchmarks.speed.slurm: {outcome.note or outcome.state}; log {outcome.log or '-'}", file=sys.stderr)
        return 1
    print(f"benchmarks.speed.slurm: done; results in {out}; log {outcome.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
