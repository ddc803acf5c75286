"""Scaling of the real trainer over GPUs and nodes of a SLURM cluster: one job per configuration.

    python -m benchmarks.scaling --slurm --nodes 1,2,4 --gpus-per-node 4 --partition gpu --time 00:30:00
    python -m benchmarks.scaling --slurm --nodes 1,2 --tasks-per-node 2 --gpus-per-node 0 --quick --out DIR

For every space (data, latent) and node count N, a training run of the trainer at a fixed per-rank
batch (weak scaling: global batch grows with the ranks) and, for N above the smallest count, at a
fixed global batch (strong scaling: the global batch of the smallest run). At the smallest count
both are the same run, the baseline of both efficiencies. Each configuration is its own SLURM job,
submitted by ``hpc-seaice submit``'s code with the all-reduce probe as entry
(:mod:`benchmarks.allreduce_probe`); throughput, step time, data wait and memory come from the run's
``metrics.jsonl``. Results: ``DIR/scaling_slurm.json``, ``.md`` and ``.png``
(:mod:`benchmarks.scaling_slurm_report`). A configuration whose result is in ``DIR`` already (same
settings, succeeded) is not run again; failed and unschedulable ones are, on the next invocation.

The data sets are made on the submitting host unless given: ``hpc-seaice data synth`` and, for the
latent space, a VAE trained for two steps and ``hpc-seaice encode`` (throughput does not depend on
what the VAE learned, only on the latent shape). Give ``--data``/``--latent-data`` for real data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from benchmarks.allreduce_probe import ENTRY, allreduce_span
from benchmarks.common import REPO_ROOT
from benchmarks.scaling import RunSpec, child_env, make_dataset, read_windows, summarise_run, train_config
from benchmarks.scaling_slurm_report import finish_rows, write_outputs
from benchmarks.slurm import BenchJob, Outcome, add_resource_arguments, cluster_name, run_jobs
from hpc_seaice.cluster.resources import Resources
from hpc_seaice.config import config_from_dict, with_absolute_paths
from hpc_seaice.data.format.manifest import MANIFEST_NAME, read_manifest

NAME = "scaling_slurm"
PRESETS = {False: ("demo-data", "demo-latent", "demo-vae", 128), True: ("tiny-unet", "tiny-unet", "tiny-vae", 64)}


def log(text: str) -> None:
    print(f"[scaling --slurm {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise SystemExit(f"benchmarks.scaling: error: {flag} {text!r}: expected comma-separated integers") from None
    if not values or values[0] < 1:
        raise SystemExit(f"benchmarks.scaling: error: {flag} {text!r}: expected positive integers")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling --slurm", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="1,2", help="node counts, e.g. 1,2,4 (default 1,2)")
    add_resource_arguments(
        p, "GPUs per node; 0 for CPU jobs (then --tasks-per-node)", "CPUs per rank (default: the cluster's)"
    )
    p.add_argument("--tasks-per-node", type=int, default=0, help="ranks per node (default: one per GPU)")
    p.add_argument("--time", default="", help="time limit per job (default 00:30:00; quick 00:10:00)")
    p.add_argument("--space", default="data,latent", help="data, latent or both (default both)")
    p.add_argument("--engine", default="ddp", choices=("ddp", "deepspeed"), help="training engine (default ddp)")
    p.add_argument("--zero-stage", type=int, default=1, help="ZeRO stage with --engine deepspeed")
    p.add_argument("--quick", action="store_true", help="tiny networks, grid 64, 6 steps (CI, the test cluster)")
    p.add_argument("--batch", type=int, default=0, help="per-rank batch of the weak runs (default 8; quick 2)")
    p.add_argument("--global-batch", type=int, default=0, help="strong runs (default: the smallest weak run's)")
    p.add_argument("--steps", type=int, default=0, help="training steps per run (default 60; quick 6)")
    p.add_argument("--log-every", type=int, default=0, help="steps per logged window (default 10; quick 2)")
    p.add_argument("--skip", type=int, default=-1, help="warm-up windows not counted (default 2; quick 1)")
    p.add_argument("--workers", type=int, default=-1, help="data-loader workers per rank (default 4; quick 0)")
    p.add_argument("--data", default="", help="field data set (default: synthesise one)")
    p.add_argument("--latent-data", default="", help="latent data set (default: encode --data with a 2-step VAE)")
    p.add_argument("--grid", type=int, default=0, help="synthetic grid side (default 128; quick 64)")
    p.add_argument(
        "--work", default="runs/scaling_slurm", help="data sets and run folders, on a file system the nodes share"
    )
    p.add_argument("--max-concurrent", type=int, default=0, help="jobs queued at once (default 0: all)")
    p.add_argument("--max-wait", type=float, default=0, help="seconds to wait for all jobs (default 6 h; quick 30 min)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between sacct polls")
    p.add_argument("--cluster-note", default="", help="what the cluster is (nodes, GPUs, interconnect), for the table")
    p.add_argument("--out", default="", help="results folder (default benchmarks/results/<cluster name>)")
    args = p.parse_args(argv)
    args.node_counts = _int_list(args.nodes, "--nodes")
    args.spaces = [s.strip() for s in args.space.split(",") if s.strip()]
    if not args.spaces or set(args.spaces) - {"data", "latent"}:
        p.error(f"--space {args.space!r}: expected data, latent or data,latent")
    args.ranks_per_node = args.tasks_per_node or args.gpus_per_node
    if args.ranks_per_node < 1:
        p.error("--gpus-per-node 0 needs --tasks-per-node K (ranks per node of a CPU job)")
    q = args.quick
    args.time = args.time or ("00:10:00" if q else "00:30:00")
    args.batch = args.batch or (2 if q else 8)
    args.steps = args.steps or (6 if q else 60)
    args.log_every = args.log_every or (2 if q else 10)
    args.skip = args.skip if args.skip >= 0 else (1 if q else 2)
    args.workers = args.workers if args.workers >= 0 else (0 if q else 4)
    args.grid = args.grid or PRESETS[q][3]
    args.max_wait = args.max_wait or (1800.0 if q else 6 * 3600.0)
    smallest = args.node_counts[0] * args.ranks_per_node
    args.global_batch = args.global_batch or args.batch * smallest
    for n in args.node_counts:
        if args.global_batch % (n * args.ranks_per_node):
            p.error(
                f"--global-batch {args.global_batch} is not divisible by the "
                f"{n * args.ranks_per_node} ranks of {n} node(s)"
            )
    if args.steps // args.log_every <= args.skip:
        p.error(f"--steps {args.steps} / --log-every {args.log_every} leaves no window after --skip {args.skip}")
    return args


def _run(command: list[str], what: str) -> None:
    env = child_env(len(os.sched_getaffinity(0)), "cpu")
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks.scaling: {what} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def prepare_data(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """The data set of each space: given, or made here once (kept in the work folder for re-runs)."""
    data = Path(args.data).resolve() if args.data else work / "data"
    if not args.data and not (data / MANIFEST_NAME).is_file():
        log(f"synthesising a {args.grid} x {args.grid} data set into {data} ...")
        make_dataset(data, args.grid, "73D" if args.quick else "5D")
    paths = {"data": data}
    if "latent" in args.spaces:
        latent = Path(args.latent_data).resolve() if args.latent_data else work / "latent"
        if not args.latent_data and not (latent / MANIFEST_NAME).is_file():
            vae_run, vae_preset = work / "vae", PRESETS[args.quick][2]
            config = {
                "stage": "autoencoder",
                "run": {"dir": str(vae_run)},
                "data": {"path": str(data), "num_workers": 0},
                "vae": {"preset": vae_preset},
                "train": {"max_steps": 2, "batch_size": 2, "log_every": 1, "checkpoint_every": 2, "val_every": 0},
            }
            config["train"]["progress"] = False
            (work / "vae.yaml").write_text(yaml.safe_dump(config))
            log(f"training {vae_preset} for 2 steps and encoding {data} into {latent} ...")
            _run([sys.executable, "-m", "hpc_seaice", "train", str(work / "vae.yaml")], "VAE training")
            encode = ["encode", "--autoencoder", str(vae_run), "--data", str(data), "--out", str(latent)]
            _run([sys.executable, "-m", "hpc_seaice", *encode, "--overwrite"], "encoding")
        paths["latent"] = latent
    return paths


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every configuration: space, mode (base / weak / strong), nodes, ranks, global batch.

    At the smallest node count the weak and the strong run are one run ("base") unless
    ``--global-batch`` differs from the weak global batch there.
    """
    configs = []
    base_nodes = args.node_counts[0]
    for space in args.spaces:
        for nodes in args.node_counts:
            ranks = nodes * args.ranks_per_node
            weak = args.batch * ranks
            if nodes == base_nodes and weak == args.global_batch:
                modes = [("base", weak)]
            else:
                modes = [("weak", weak), ("strong", args.global_batch)]
            for mode, batch in modes:
                name = f"{space}-{mode}-{nodes}n"
                configs.append(
                    {"name": name, "space": space, "mode": mode, "nodes": nodes, "ranks": ranks, "global_batch": batch}
                )
    return configs


def experiment(args: argparse.Namespace, item: dict[str, Any], data: Path, run_dir: Path) -> dict[str, Any]:
    """The trainer's config of one configuration (benchmarks.scaling's, plus the latent channels)."""
    presets = PRESETS[args.quick]
    preset = presets[0] if item["space"] == "data" else presets[1]
    spec = RunSpec(
        item["name"],
        item["ranks"],
        1,
        item["global_batch"],
        args.engine,
        args.zero_stage if args.engine == "deepspeed" else 0,
    )
    config = train_config(spec, data, run_dir, preset, args.steps, args.log_every, args.workers)
    config["unet"]["in_channels"] = len(read_manifest(data).variables)
    return config


def fingerprint(config: dict[str, Any], res: Resources) -> str:
    """What makes two runs of one configuration comparable (not the run folder)."""
    settings = {k: v for k, v in config.items() if k != "run"}
    text = json.dumps({"config": settings, "resources": res.__dict__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def previous_rows(out: Path) -> dict[str, dict[str, Any]]:
    path = out / f"{NAME}.json"
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text()).get("results", [])
    except (OSError, json.JSONDecodeError):
        return {}
    return {r["name"]: r for r in rows if isinstance(r, dict) and "name" in r}


def measure(item: dict[str, Any], outcome: Outcome, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The table row of one finished (or failed) job."""
    row = {**item, "engine": "DDP" if args.engine == "ddp" else f"DeepSpeed ZeRO-{args.zero_stage}"}
    row.update({"job_id": outcome.job_id, "state": outcome.state, "log": outcome.log, "hosts": outcome.hosts})
    if not outcome.ok:
        return {**row, "status": outcome.note or outcome.state}
    spec = RunSpec(item["name"], item["ranks"], 1, item["global_batch"])
    try:
        row.update(summarise_run(spec, read_windows(run_dir), args.skip))
    except ValueError as exc:
        return {**row, "status": str(exc)}
    probe = allreduce_span(run_dir, args.skip * args.log_every)
    if probe and row.get("step_time_s"):
        row["allreduce_s"] = probe["allreduce_s"]
        row["allreduce_share"] = min(1.0, probe["allreduce_s"] / row["step_time_s"])
    return {**row, "status": "ok"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = cluster_name()
    out = Path(args.out) if args.out else REPO_ROOT / "benchmarks" / "results" / (name or "slurm")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    paths = prepare_data(args, work)
    previous = previous_rows(out)
    rows: dict[str, dict[str, Any]] = {}
    jobs: list[BenchJob] = []
    items: dict[str, dict[str, Any]] = {}
    for item in plan(args):
        run_dir = work / item["name"]
        res = replace(Resources.from_options(vars(args)), nodes=item["nodes"], job_name=f"bench-{item['name']}")
        config = experiment(args, item, paths[item["space"]], run_dir)
        item["fingerprint"] = fingerprint(config, res)
        done = previous.get(item["name"])
        if done and done.get("status") == "ok" and done.get("fingerprint") == item["fingerprint"]:
            log(f"{item['name']}: result exists (job {done.get('job_id')}); skipped")
            rows[item["name"]] = done
            continue
        items[item["name"]] = {**item, "run_dir": run_dir}
        jobs.append(BenchJob(item["name"], with_absolute_paths(config_from_dict(config)), res, ENTRY))

    def save(outcome: Outcome | None = None) -> None:
        if outcome is not None:
            item = items[outcome.name]
            rows[outcome.name] = measure(
                {k: v for k, v in item.items() if k != "run_dir"}, outcome, item["run_dir"], args
            )
        ordered = [rows[i["name"]] for i in plan(args) if i["name"] in rows]
        write_outputs(out, NAME, finish_rows(ordered), args, name, work, time.time() - started)

    if jobs:
        run_jobs(
            jobs,
            max_concurrent=args.max_concurrent,
            max_wait_s=args.max_wait,
            poll_s=args.poll,
            on_outcome=save,
            log=log,
        )
    else:
        save()
    failed = [r["name"] for r in rows.values() if r.get("status") != "ok"]
    log(f"written {out / (NAME + '.json')}, .md and .png" + (f"; not measured: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
