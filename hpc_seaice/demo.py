"""``make demo``: the whole pipeline on synthetic data, 2 processes on CPU, with a report.

Stages (each prints one line when it starts and when it ends, and is skipped when its output
is already complete, so re-running resumes where it stopped):

1. synthetic neXtSIM-like data (128 x 128, every 5 days over 2009-2018) into sharded HDF5;
2. two VAEs, censored-Gaussian and Gaussian decoders (torchrun, 2 ranks, DDP);
3. ``encode`` of every split into latent shards with each VAE (2 ranks);
4. latent diffusion on each VAE's latents (censored: DDP; Gaussian: DeepSpeed ZeRO-2) and
   data-space diffusion on the fields (DDP), all under torchrun with 2 ranks;
5. ``sample`` from the three models (2 ranks) and ``evaluate`` against the test split,
   with the VAEs' reconstructions;
6. the speed benchmark in quick mode and the data-loader benchmark;
7. ``demo/report.md``.

Training runs resume from their last checkpoint if interrupted (the trainer does this itself).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hpc_seaice.config import load_config
from hpc_seaice.demo_compute import checkpoint_at_cost, total_training_seconds
from hpc_seaice.demo_report import ROLE_MODELS, Stage, write_report
from hpc_seaice.fileio import atomic_write
from hpc_seaice.runtime.checkpoint import latest_checkpoint

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent
DECODER_NAMES = {"censored": "censored-Gaussian", "gaussian": "Gaussian"}
EQUAL_COST_MODEL = "data-space at LDM cost"
SPECTRAL_MODEL = "ldm-censored + spectral decoder noise"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DS_ACCELERATOR", "cpu")
    env.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    # Skip DeepSpeed's shared-memory comm op JIT build (~30 s on a machine's first DeepSpeed run):
    # it only speeds up intra-node CPU collectives, which are not the bottleneck here.
    env.setdefault("HPC_SEAICE_DS_SKIP_SHM", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(command: list[str], log: Path) -> None:
    """Run a stage's command; its output goes to the terminal and to a log file.

    stderr (progress bars, warnings, errors) goes straight to the terminal, so tqdm sees one and
    draws live bars; stdout (banners, summaries) is also copied into the stage's log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    print("  $ " + " ".join(command), flush=True)
    with open(log, "a") as handle:
        proc = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE)
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
            handle.write(raw.decode(errors="replace"))
        code = proc.wait()
    if code != 0:
        raise SystemExit(f"demo: stage failed (exit {code}): {' '.join(command)}\n  log: {log}")


def _torchrun(*args: str) -> list[str]:
    return [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "hpc_seaice", *args]


@dataclass(frozen=True)
class Plan:
    """What the pipeline runs: the demo's sizes by default; ``benchmarks.study`` passes its own.

    ``overrides``: extra config overrides per run (``vae``, ``ldm``, ``data-space``, ``refiner``), e.g. the
    number of training steps; ``synth``: extra ``data synth`` options (e.g. a shorter period).
    """

    grid: int = 128
    freq: str = "5D"
    synth: tuple[str, ...] = ()
    configs: Path = ROOT / "configs/demo"
    overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    num_samples: int = 16
    sample_batch: int = 4
    bootstrap: int = 1000  # evaluate's replicates per interval
    equal_cost: bool = True  # also sample the data-space checkpoint at the censored LDM's cost
    benchmarks: bool = True  # the quick speed and data-loader benchmarks
    refiner: bool = False  # also a residual refiner of the censored LDM (docs/refiner.md), the fourth role

    def extra(self, run: str) -> list[str]:
        return list(self.overrides.get(run, ()))

    def period(self) -> str:
        """The data stage's words for the time axis (the demo's title is kept: it keys stage_times.json)."""
        if self.freq == "5D" and not self.synth:
            return "5-daily 2009-2018"
        return f"every {self.freq}" + (f" ({' '.join(self.synth)})" if self.synth else "")


def _sample(run_dir: Path, target: Path, plan: Plan, *extra: str) -> list[str]:
    """The plan's samples in batches on 2 ranks (torchrun spellings of the sample options)."""
    n, batch = str(plan.num_samples), str(plan.sample_batch)
    return _torchrun(
        "sample", "--run-dir", str(run_dir), *extra, "--num-samples", n, "--out", str(target), "--batch-size", batch
    )


def _hpc(*args: str) -> list[str]:
    return [PYTHON, "-m", "hpc_seaice", *args]


def _trained(run_dir: Path, config: Path, overrides: list[str]) -> bool:
    if not (run_dir / "checkpoints" / "latest").is_file():
        return False
    max_steps = load_config(config, overrides).train.max_steps
    return int(latest_checkpoint(run_dir).name.split("_")[-1]) >= max_steps


def _evaluated(evaluation: Path, roles: list[str]) -> bool:
    """Whether the evaluation folder holds a report that decided the findings for exactly ``roles``."""
    try:
        recorded = json.loads((evaluation / "metrics.json").read_text()).get("findings_roles", {})
    except (OSError, ValueError):
        return False
    return sorted(recorded) == sorted(roles)


class Demo:
    def __init__(self, out: Path, plan: Plan | None = None) -> None:
        self.out = out
        self.plan = plan or Plan()
        self.logs = out / "logs"
        self.stages: list[Stage] = []
        # 12 stages, + the equal-cost sample (the demo prints 14 even when that one turns out not to be needed)
        # + the benchmarks
        self.total = 12 + int(self.plan.equal_cost) + int(self.plan.benchmarks) + 3 * int(self.plan.refiner)
        self.times_file = out / "stage_times.json"  # stage title -> seconds, kept across re-runs
        self.times: dict[str, float] = {}
        if self.times_file.is_file():
            try:
                self.times = dict(json.loads(self.times_file.read_text()))
            except (ValueError, TypeError):  # a torn write: the times are only for the report
                self.times = {}

    def stage(self, title: str, done: bool, command_lists: list[list[str]], outputs: list[str]) -> None:
        number = len(self.stages) + 1
        if done:
            print(f"[{number}/{self.total}] {title}: already done, skipped ({', '.join(outputs)})", flush=True)
            self.stages.append(Stage(title, True, self.times.get(title), outputs))
            return
        print(f"[{number}/{self.total}] {title} ...", flush=True)
        start = time.perf_counter()
        for command in command_lists:
            _run(command, self.logs / f"{number:02d}.log")
        seconds = time.perf_counter() - start
        print(f"[{number}/{self.total}] {title}: done in {seconds:.0f} s -> {', '.join(outputs)}", flush=True)
        self.stages.append(Stage(title, False, seconds, outputs))
        self.times[title] = seconds
        atomic_write(self.times_file, json.dumps(self.times, indent=1))

    def train_stage(self, title: str, config: Path, run_dir: Path, overrides: list[str]) -> Path:
        """A ``train`` stage under torchrun (2 ranks); done once its run reached ``train.max_steps``."""
        overrides = [f"run.dir={run_dir}", *overrides]
        command = _torchrun("train", str(config), *overrides)
        self.stage(title, _trained(run_dir, config, overrides), [command], [str(run_dir)])
        return run_dir

    def latent_cost(self, vae_run: Path, decoder: str, ldm_run: Path) -> float:
        """Training seconds of a latent model, its VAE and the encoding of the data set included."""
        encode = self.times.get(f"encode every split with the {decoder} VAE (2 ranks)", 0.0)
        return total_training_seconds(vae_run) + encode + total_training_seconds(ldm_run)

    def run(self) -> None:
        """The whole demo: the pipeline, the benchmarks and ``demo/report.md``."""
        start = time.perf_counter()
        done = self.pipeline()
        out, evaluation = self.out, self.out / "evaluation"
        write_report(
            out,
            self.stages,
            done.diffusion_runs,
            done.vae_runs,
            time.perf_counter() - start,
            done.costs,
            done.equal_cost,
        )
        print(
            f"\nDemo finished in {time.perf_counter() - start:.0f} s.\n"
            f"  report:       {out / 'report.md'}\n"
            f"  figures:      {evaluation}/*.png\n"
            f"  samples:      {out / 'samples'}/*.nc\n"
            f"  checkpoints:  {out / 'runs'}/*/checkpoints\n"
            f"  TensorBoard:  {out / 'runs'}/*/tensorboard  ->  {BIN / 'tensorboard'} --logdir {out / 'runs'}\n"
            f"  logs:         {self.logs}",
            flush=True,
        )

    def pipeline(self) -> Pipeline:
        """Data, VAEs, encoding, the three diffusion models, sampling, evaluation (with the findings)."""
        out, plan = self.out, self.plan
        data = out / "data"
        grid = str(plan.grid)
        self.stage(
            f"synthetic neXtSIM-like data, {grid} x {grid}, {plan.period()}",
            (data / "manifest.json").is_file(),
            [
                _hpc(
                    "data", "synth", "--out", str(data), "--grid", grid, "--freq", plan.freq, *plan.synth, "--overwrite"
                )
            ],
            [str(data)],
        )
        vae_runs = {}
        for decoder in ("censored", "gaussian"):
            run_dir = out / "runs" / f"vae-{decoder}"
            config = plan.configs / "autoencoder.yaml"
            overrides = [f"vae.decoder={decoder}", f"data.path={data}", *plan.extra("vae")]
            title = f"VAE with {DECODER_NAMES[decoder]} decoder (torchrun, 2 ranks, DDP)"
            vae_runs[decoder] = self.train_stage(title, config, run_dir, overrides)
        for decoder, run_dir in vae_runs.items():
            latents = out / f"latents-{decoder}"
            self.stage(
                f"encode every split with the {decoder} VAE (2 ranks)",
                (latents / "manifest.json").is_file(),
                [
                    _torchrun(
                        "encode",
                        "--autoencoder",
                        str(run_dir),
                        "--data",
                        str(data),
                        "--out",
                        str(latents),
                        "--overwrite",
                    )
                ],
                [str(latents)],
            )
        diffusion_runs = {}
        plans = [
            ("ldm-censored", "diffusion-latent.yaml", out / "latents-censored", ["engine.name=ddp"], "DDP"),
            (
                "ldm-gaussian",
                "diffusion-latent.yaml",
                out / "latents-gaussian",
                ["engine.name=deepspeed", "engine.zero_stage=2"],
                "DeepSpeed ZeRO-2",
            ),
            ("data-space", "diffusion-data.yaml", data, ["engine.name=ddp"], "DDP"),
        ]
        for name, config_name, path, engine, engine_name in plans:
            run_dir = out / "runs" / f"diffusion-{name}"
            config = plan.configs / config_name
            overrides = [f"data.path={path}", *engine, *plan.extra("ldm" if name.startswith("ldm") else name)]
            title = f"{name} diffusion (torchrun, 2 ranks, {engine_name})"
            diffusion_runs[name] = self.train_stage(title, config, run_dir, overrides)
        if plan.refiner:  # trained after the latent run it refines; sampled and evaluated as the fourth role
            run_dir = out / "runs" / "refiner-censored"
            overrides = [
                f"data.path={data}",
                f"refine.latent_run={diffusion_runs['ldm-censored']}",
                *plan.extra("refiner"),
            ]
            title = "residual refiner of the censored LDM (torchrun, 2 ranks, DDP)"
            diffusion_runs["ldm-refined"] = self.train_stage(title, plan.configs / "refiner.yaml", run_dir, overrides)
        samples = []
        costs = {
            "ldm-censored": self.latent_cost(vae_runs["censored"], "censored", diffusion_runs["ldm-censored"]),
            "ldm-gaussian": self.latent_cost(vae_runs["gaussian"], "gaussian", diffusion_runs["ldm-gaussian"]),
            "data-space": total_training_seconds(diffusion_runs["data-space"]),
        }
        equal_cost = None
        if plan.equal_cost and costs["data-space"] > costs["ldm-censored"]:
            found = checkpoint_at_cost(diffusion_runs["data-space"], costs["ldm-censored"])
            if found is not None:
                equal_cost = (EQUAL_COST_MODEL, *found)
        for name, run_dir in diffusion_runs.items():
            target = out / "samples" / f"{name}.nc"
            samples.append(target)
            self.stage(
                f"sample {plan.num_samples} states from {name} (Heun, the run's sampler_steps, 2 ranks)",
                target.is_file(),
                [_sample(run_dir, target, plan)],
                [str(target)],
            )
        if plan.refiner:  # the other latent path that does not smooth: no training, noise after the decoder
            target = out / "samples" / "ldm-spectral.nc"
            samples.append(target)
            self.stage(
                f"sample {plan.num_samples} states from ldm-censored with spectral decoder noise (2 ranks)",
                target.is_file(),
                [
                    _sample(
                        diffusion_runs["ldm-censored"],
                        target,
                        plan,
                        "--decoder-noise",
                        "spectral",
                        "--name",
                        SPECTRAL_MODEL,
                    )
                ],
                [str(target)],
            )
        if equal_cost is not None:
            _, step, _ = equal_cost
            target = out / "samples" / "data-space-at-ldm-cost.nc"
            samples.append(target)
            self.stage(
                f"sample {plan.num_samples} states from data-space at the censored LDM's cost (step {step}, 2 ranks)",
                target.is_file(),
                [
                    _sample(
                        diffusion_runs["data-space"],
                        target,
                        plan,
                        "--checkpoint",
                        str(step),
                        "--name",
                        EQUAL_COST_MODEL,
                    )
                ],
                [str(target)],
            )
        evaluation = out / "evaluation"
        roles = [role for role in ROLE_MODELS if (out / "samples" / f"{role}.nc") in samples]
        self.stage(
            "evaluate every samples file, the floor and the two VAEs against the test split; decide the findings",
            _evaluated(evaluation, roles),
            [
                _hpc(
                    "evaluate",
                    "--samples",
                    *map(str, samples),
                    "--data",
                    str(data),
                    "--split",
                    "test",
                    "--out",
                    str(evaluation),
                    "--reconstruct",
                    *map(str, vae_runs.values()),
                    "--findings",
                    ",".join(f"{role}={out / 'samples' / f'{role}.nc'}" for role in roles),
                    "--bootstrap",
                    str(plan.bootstrap),
                )
            ],
            [str(evaluation / "report.md")],
        )
        if plan.benchmarks:
            bench = out / "benchmarks"
            self.stage(
                "speed benchmark (quick) and data-loader benchmark (quick)",
                (bench / "speed.json").is_file() and (bench / "dataloader.json").is_file(),
                [
                    [PYTHON, "-m", "benchmarks.speed", "--quick", "--out", str(bench)],
                    [PYTHON, "-m", "benchmarks.dataloader", "--quick", "--out", str(bench)],
                ],
                [str(bench)],
            )
        return Pipeline(data, vae_runs, diffusion_runs, costs, equal_cost, evaluation)


@dataclass
class Pipeline:
    """What :meth:`Demo.pipeline` made: folders of the data, runs and evaluation, and the training costs."""

    data: Path
    vae_runs: dict[str, Path]
    diffusion_runs: dict[str, Path]
    costs: dict[str, float]
    equal_cost: tuple[str, int, float] | None
    evaluation: Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpc_seaice.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo", help="output folder (default: demo)")
    parser.add_argument("--clean", action="store_true", help="remove the output folder first")
    args = parser.parse_args(argv)
    out = (ROOT / args.out) if not Path(args.out).is_absolute() else Path(args.out)
    if args.clean:
        shutil.rmtree(out, ignore_errors=True)
    if out.exists():
        print(f"demo: {out} exists; finished stages are skipped (make demo-clean starts over)", flush=True)
    Demo(out).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
