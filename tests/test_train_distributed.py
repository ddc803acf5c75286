"""The trainer across real processes (gloo on CPU): torchrun, DeepSpeed, mpirun, SLURM variables.

Every test asserts on what the run produced (losses, checkpoints, logged steps), not only on
exit codes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    VENV_BIN,
    assert_close_trajectories,
    child_env,
    free_port,
    hpc_seaice,
    logged_steps,
    losses,
    read_metrics,
    run_command,
    tiny_diffusion_config,
    torchrun,
    write_config,
)

from hpc_seaice.config import config_from_dict
from hpc_seaice.errors import UserError
from hpc_seaice.runtime.checkpoint import latest_checkpoint
from hpc_seaice.runtime.integrity import verify_files
from hpc_seaice.runtime.stopping import STOP_FILE
from hpc_seaice.train.trainer import run_training

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def single_process_reference(tiny_dataset, tmp_path_factory):
    """1 process, global batch 4 (2 micro-batches of 2): the trajectory N ranks must follow."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"grad_accum": 2})
    assert run_training(config_from_dict(config)) == 0
    return losses(run_dir)


def test_ddp_two_ranks_follow_the_single_process_trajectory(tiny_dataset, tmp_path, single_process_reference):
    run_dir = tmp_path / "ddp"
    path = write_config(tmp_path / "c.yaml", tiny_diffusion_config(tiny_dataset, run_dir))
    proc = torchrun(2, "train", str(path))
    assert "2 rank(s) on 1 host(s)" in proc.stdout and "via torchrun" in proc.stdout
    assert_close_trajectories(losses(run_dir), single_process_reference)
    # a normal run prints no warning a user cannot act on (torch's own, or torchrun's W-lines)
    warned = [line for line in proc.stderr.splitlines() if "Warning" in line or re.match(r"W\d{4} ", line)]
    assert not warned, "\n".join(warned)


@pytest.mark.parametrize("zero_stage", [1, 2])
def test_deepspeed_zero_trains_checkpoints_and_resumes(tiny_dataset, tmp_path, single_process_reference, zero_stage):
    run_dir = tmp_path / f"zero{zero_stage}"
    config = tiny_diffusion_config(tiny_dataset, run_dir, engine={"name": "deepspeed", "zero_stage": zero_stage})
    config["train"]["max_steps"] = 3
    path = write_config(tmp_path / "c.yaml", config)
    proc = torchrun(2, "train", str(path), "train.max_steps=6")
    assert f"engine deepspeed ZeRO-{zero_stage}" in proc.stdout
    assert_close_trajectories(losses(run_dir), single_process_reference)
    assert latest_checkpoint(run_dir).name == "step_00000006"
    # Throw away the last checkpoint and resume from step 3: the same losses again.
    import shutil

    shutil.rmtree(run_dir / "checkpoints" / "step_00000006")
    (run_dir / "checkpoints" / "latest").write_text("step_00000003\n")
    proc = torchrun(2, "train", str(path), "train.max_steps=6")
    assert "resuming from step 3" in proc.stdout
    assert logged_steps(run_dir) == [1, 2, 3, 4, 5, 6]
    assert_close_trajectories(losses(run_dir), single_process_reference)


def test_deepspeed_zero_checkpoint_resumes_on_another_world_size(tiny_dataset, tmp_path, single_process_reference):
    """2 ranks with ZeRO-2 to step 3, then 1 rank to step 6: resharded through a universal checkpoint."""
    run_dir = tmp_path / "reshard"
    config = tiny_diffusion_config(tiny_dataset, run_dir, engine={"name": "deepspeed", "zero_stage": 2})
    path = write_config(tmp_path / "c.yaml", config)
    torchrun(2, "train", str(path), "train.max_steps=3")
    proc = hpc_seaice("train", str(path))  # fails the test on a non-zero exit
    assert "resuming from step 3" in proc.stdout and "1 rank(s)" in proc.stdout
    assert "converting" in proc.stderr and (run_dir / "checkpoints/step_00000003/universal/zero").is_dir()
    assert [m["step"] for m in read_metrics(run_dir) if "loss" in m] == [1, 2, 3, 4, 5, 6]
    assert_close_trajectories(losses(run_dir), single_process_reference)
    # The universal form joined the checkpoint's signed hash table: checked like the rest from now on.
    folder = run_dir / "checkpoints/step_00000003"
    listed = [name for name in verify_files(folder)["files"] if name.startswith("universal/")]
    assert len(listed) == sum(1 for p in (folder / "universal").rglob("*") if p.is_file()) > 0
    victim = folder / next(name for name in listed if name.endswith(".pt"))
    victim.write_bytes(victim.read_bytes()[:-1])
    with pytest.raises(UserError, match="changed or damaged"):
        verify_files(folder)


def test_two_ranks_stopped_at_a_step_boundary_resume_the_same_trajectory(tiny_dataset, tmp_path):
    reference = tmp_path / "reference"
    config = tiny_diffusion_config(tiny_dataset, reference, train={"max_steps": 30, "checkpoint_every": 100})
    assert run_training(config_from_dict({**config, "train": {**config["train"], "grad_accum": 2}})) == 0

    run_dir = tmp_path / "interrupted"
    config["run"]["dir"] = str(run_dir)
    path = write_config(tmp_path / "c.yaml", config)
    run_dir.mkdir()
    (run_dir / STOP_FILE).touch()  # rank 0 sees it after the first step; both ranks stop there
    proc = torchrun(2, "train", str(path), check=False)  # torchrun reports the workers' exit 75 as a failure
    assert proc.returncode != 0 and "stop file" in proc.stdout, proc.stderr[-3000:]
    assert latest_checkpoint(run_dir).name == "step_00000001"
    torchrun(2, "train", str(path))
    assert logged_steps(run_dir) == list(range(1, 31))
    assert_close_trajectories(losses(run_dir), losses(reference))


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.is_file() else []


def test_killed_rank_restarts_from_last_checkpoint_and_finishes(tiny_dataset, tmp_path):
    run_dir = tmp_path / "killed"
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 40, "checkpoint_every": 5})
    path = write_config(tmp_path / "c.yaml", config)
    command = [
        str(VENV_BIN / "torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        "--max-restarts=1",
        "-m",
        "hpc_seaice",
        "train",
        str(path),
    ]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and latest_checkpoint(run_dir) is None:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGKILL)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert out.count("hpc-seaice train |") == 2 and "resuming from step" in out
    steps = logged_steps(run_dir)
    assert steps == list(range(1, 41))  # every step logged once after the restart
    assert latest_checkpoint(run_dir).name == "step_00000040"


def test_mpirun_two_ranks_train(tiny_dataset, tmp_path, single_process_reference):
    mpiexec = VENV_BIN / "mpiexec"
    if not mpiexec.exists():
        pytest.fail("mpiexec from the mpich wheel is missing: run make install")
    run_dir = tmp_path / "mpi"
    path = write_config(tmp_path / "c.yaml", tiny_diffusion_config(tiny_dataset, run_dir))
    proc = run_command([str(mpiexec), "-n", "2", sys.executable, "-m", "hpc_seaice", "train", str(path)])
    assert "via mpi" in proc.stdout and "2 rank(s)" in proc.stdout
    assert_close_trajectories(losses(run_dir), single_process_reference)


def test_slurm_variables_initialise_two_tasks(tiny_dataset, tmp_path, single_process_reference):
    """Two processes with the variables srun sets (no torchrun): rank, world and master agree."""
    run_dir = tmp_path / "slurm-vars"
    path = write_config(tmp_path / "c.yaml", tiny_diffusion_config(tiny_dataset, run_dir))
    port = free_port()
    procs = []
    for rank in range(2):
        env = child_env(
            SLURM_PROCID=str(rank),
            SLURM_NTASKS="2",
            SLURM_STEP_NUM_TASKS="2",
            SLURM_LOCALID=str(rank),
            SLURM_JOB_ID="4242",
            SLURM_JOB_NODELIST="localhost",
            MASTER_PORT=str(port),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "hpc_seaice", "train", str(path)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "via slurm" in outputs[0][0] and "2 rank(s)" in outputs[0][0]
    assert_close_trajectories(losses(run_dir), single_process_reference)
