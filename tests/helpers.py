"""Shared helpers for tests that run the command line and real process launchers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from hpc_seaice.data.format.variables import BOUNDS, VARIABLES

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


# Normalisation and bounds of a VAE built without a data set: identity normalisation, the
# variables' physical bounds (keyword arguments of VAE and build_vae).
NEUTRAL_VAE_STATS = {
    "data_mean": [0.0] * 5,
    "data_std": [1.0] * 5,
    "lower": [BOUNDS[v][0] for v in VARIABLES],
    "upper": [BOUNDS[v][1] for v in VARIABLES],
}


def child_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: quiet, single-threaded, DeepSpeed on CPU without JIT builds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "DS_ACCELERATOR": "cpu",
            "HPC_SEAICE_DS_SKIP_SHM": "1",
            "HDF5_USE_FILE_LOCKING": "FALSE",
            # torchrun restarts: a fresh rendezvous store per round (pytorch/pytorch#135712)
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def tiny_diffusion_config(data_path: Path, run_dir: Path, **sections) -> dict:
    """A diffusion run that takes well under a second per step on one CPU thread."""
    config = {
        "stage": "diffusion",
        "run": {"dir": str(run_dir), "keep_checkpoints": 10},
        "data": {"path": str(data_path), "num_workers": 0},
        "unet": {"preset": "tiny-unet"},
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "train": {
            "max_steps": 6,
            "batch_size": 4,
            "seed": 1,
            "log_every": 1,
            "checkpoint_every": 3,
            "val_every": 0,
            "progress": False,
        },
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


def tiny_autoencoder_config(data_path: Path, run_dir: Path, **sections) -> dict:
    config = tiny_diffusion_config(data_path, run_dir, **sections)
    config["stage"] = "autoencoder"
    del config["unet"]
    config["vae"] = {"preset": "tiny-vae", **sections.get("vae", {})}
    return config


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def logged_steps(run_dir: Path) -> list[int]:
    """The step of every line of the run's metrics.jsonl, in order (a step logged twice shows twice)."""
    return [m["step"] for m in read_metrics(run_dir)]


def losses(run_dir: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in read_metrics(run_dir) if "loss" in m}


def assert_close_trajectories(a: dict[int, float], b: dict[int, float], rtol: float = 1e-4) -> None:
    """The same steps, each loss within ``rtol``: what ranks, engines and resumes must keep."""
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    for step in a:
        assert abs(a[step] - b[step]) <= rtol * max(abs(a[step]), 1e-8), (step, a[step], b[step])


def run_command(
    command: list[str], env: dict | None = None, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``command`` from the repository root (default environment: :func:`child_env`); with
    ``check`` a non-zero exit fails the test with the tails of both streams."""
    proc = subprocess.run(command, cwd=ROOT, env=env or child_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def hpc_seaice(*args: str, env: dict | None = None, timeout: float = 300, check: bool = True):
    """Run ``python -m hpc_seaice ARGS`` and return the completed process."""
    return run_command([sys.executable, "-m", "hpc_seaice", *args], env=env, timeout=timeout, check=check)


def torchrun(
    nproc: int,
    *args: str,
    extra: tuple[str, ...] = (),
    env: dict | None = None,
    timeout: float = 300,
    check: bool = True,
):
    """``torchrun --standalone --nproc_per_node=N -m hpc_seaice ARGS`` (c10d rendezvous)."""
    command = [
        str(VENV_BIN / "torchrun"),
        "--standalone",
        f"--nproc_per_node={nproc}",
        *extra,
        "-m",
        "hpc_seaice",
        *args,
    ]
    return run_command(command, env=env, timeout=timeout, check=check)
