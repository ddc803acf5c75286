"""`hpc-seaice submit --dry-run`, argument checks and `hpc-seaice status` without any SLURM.

These run everywhere (no cluster, no root): what users see before a job exists, and the status
of a run folder when SLURM is not reachable.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, child_env, hpc_seaice, tiny_diffusion_config, write_config

from hpc_seaice.cli import build_parser
from hpc_seaice.cluster.submit import Resources, parse_time_minutes, sbatch_parameters
from hpc_seaice.errors import UserError


def no_slurm_env() -> dict[str, str]:
    """PATH with the venv only: no sbatch, sacct, squeue, scontrol."""
    return child_env(PATH=f"{Path(sys.executable).parent}:/nonexistent")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.yaml", tiny_diffusion_config(tmp_path / "data", tmp_path / "runs" / "r"))


def resolved_configs(stdout: str) -> list[dict]:
    """The YAML documents printed after each '# resolved config' line of a dry run."""
    parts = stdout.split("# resolved config")[1:]
    return [yaml.safe_load(part.split("\n", 1)[1]) for part in parts]


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("30", 30), ("90:30", 91), ("02:00:00", 120), ("1-00", 1440), ("1-02:30", 1590), ("0-00:00:01", 1)],
)
def test_time_limits_in_slurm_formats(text, minutes):
    assert parse_time_minutes(text) == minutes


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "0", "00:00:00"])
def test_bad_time_limits_are_user_errors(text):
    with pytest.raises(UserError, match="--time"):
        parse_time_minutes(text)


def test_one_task_per_gpu_by_default_and_cpu_jobs_need_tasks():
    params = sbatch_parameters(Resources(nodes=2, gpus_per_node=4, mem="64G"), "job")
    assert params["ntasks_per_node"] == 4 and params["gpus_per_node"] == 4 and params["nodes"] == 2
    assert params["time"] is None  # the partition's default, not submitit's 5 minutes
    assert params["additional_parameters"] == {"mem": "64G"}
    cpu = sbatch_parameters(Resources(gpus_per_node=0, tasks_per_node=2), "job")
    assert cpu["ntasks_per_node"] == 2 and "gpus_per_node" not in cpu
    with pytest.raises(UserError, match="--tasks-per-node"):
        Resources(gpus_per_node=0).validate()
    with pytest.raises(UserError, match="--mem"):
        Resources(mem="lots").validate()


def test_overrides_may_follow_options():
    args = build_parser().parse_args(["submit", "c.yaml", "--nodes", "2", "train.seed=3", "run.dir=x", "--wait"])
    assert args.nodes == 2 and args.wait and args.overrides == ["train.seed=3", "run.dir=x"]


def test_dry_run_prints_sbatch_script_and_resolved_config(config, tmp_path):
    proc = hpc_seaice(
        "submit",
        str(config),
        "--nodes=2",
        "--gpus-per-node=4",
        "--cpus-per-task=8",
        "--partition=gpu",
        "--time=1-00:00:00",
        "--mem=64G",
        "--account=proj",
        "--qos=high",
        "--constraint=a100",
        "train.max_steps=7",
        "--dry-run",
        env=no_slurm_env(),
    )
    out = proc.stdout
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=1440",
        "#SBATCH --mem=64G",
        "#SBATCH --account=proj",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=a100",
        "#SBATCH --signal=USR2@120",  # never USR1: NCCL uses it
        "#SBATCH --open-mode=append",  # logs survive requeues
    ):
        assert line in out, (line, out)
    run_dir = tmp_path / "runs" / "r"
    assert f"srun --unbuffered --output {run_dir}/slurm/%j_%t_log.out" in out
    assert "-m submitit.core._submit" in out and "torchrun" not in out
    (resolved,) = resolved_configs(out)
    assert resolved["train"]["max_steps"] == 7 and resolved["run"]["dir"] == str(run_dir)
    assert not run_dir.exists()  # nothing written, nothing submitted


def test_dry_run_of_an_array(config, tmp_path):
    proc = hpc_seaice(
        "submit",
        str(config),
        "--gpus-per-node=0",
        "--tasks-per-node=2",
        "--dry-run",
        "--array",
        f"train.seed=1 run.dir={tmp_path}/sweep/a",
        f"train.seed=2 run.dir={tmp_path}/sweep/b",
        env=no_slurm_env(),
    )
    assert "#SBATCH --array=0-1%2" in proc.stdout and "#SBATCH --hold" in proc.stdout
    first, second = resolved_configs(proc.stdout)
    assert (first["train"]["seed"], second["train"]["seed"]) == (1, 2)
    assert (first["run"]["dir"], second["run"]["dir"]) == (f"{tmp_path}/sweep/a", f"{tmp_path}/sweep/b")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--array", "train.seed=1", "train.seed=2"], "share run.dir"),
        (["--gpus-per-node=0"], "--tasks-per-node"),
        (["--time=soon"], "--time"),
        (["--max-requeues=-1"], "--max-requeues"),
        (["--array", "train.seed"], "train.seed"),
        (["train.no_such_key=1"], "train.no_such_key"),
    ],
)
def test_bad_submissions_are_one_line_errors(config, args, message):
    proc = hpc_seaice("submit", str(config), *args, "--dry-run", env=no_slurm_env(), check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_submit_without_slurm_says_so(config):
    proc = hpc_seaice("submit", str(config), "--gpus-per-node=0", "--tasks-per-node=1", env=no_slurm_env(), check=False)
    assert proc.returncode == 2 and "'sbatch' not found" in proc.stderr, proc.stderr


def test_status_without_slurm_reports_unknown_states(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest").write_text("step_00000020\n")
    (run_dir / "slurm").mkdir()
    (run_dir / "slurm" / "submitted.jsonl").write_text(json.dumps({"job_id": "77"}) + "\n")
    (run_dir / "slurm" / "requeues.jsonl").write_text(json.dumps({"job_id": "77", "requeue": 1}) + "\n")
    (run_dir / "jobs.jsonl").write_text(
        "".join(json.dumps({"slurm_job_id": "77", "start_step": s}) + "\n" for s in (0, 10))
    )
    metrics = [{"step": s, "loss": 1.0 / s} for s in range(1, 26)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics) + '{"step": 2')  # torn
    out = hpc_seaice("status", str(run_dir), env=no_slurm_env()).stdout
    assert "SLURM not reachable" in out and "77" in out and "unknown" in out, out
    assert "trainer starts 2, automatic requeues 1" in out, out
    assert "last step: 25, loss 0.04" in out and "last checkpoint: step_00000020" in out, out


def test_status_of_a_fresh_or_missing_run_folder(tmp_path):
    (tmp_path / "fresh").mkdir()
    out = hpc_seaice("status", str(tmp_path / "fresh"), env=no_slurm_env()).stdout
    assert "jobs: none recorded" in out and "last step: none" in out and "last checkpoint: none yet" in out
    proc = hpc_seaice("status", str(tmp_path / "missing"), env=no_slurm_env(), check=False)
    assert proc.returncode == 2 and "run folder not found" in proc.stderr


def test_status_lists_trainer_starts_outside_slurm(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record = {"time": 0, "start_step": 30, "launcher": "torchrun", "world_size": 2, "hosts": ["vm"]}
    (run_dir / "jobs.jsonl").write_text(json.dumps(record) + "\n")
    out = hpc_seaice("status", str(run_dir), env=no_slurm_env()).stdout
    assert "jobs: none recorded" not in out and "SLURM jobs: none" in out, out
    assert "1970-01-01 00:00:00 UTC  torchrun, 2 rank(s) on vm, from step 30" in out, out


def test_exit_code_for_interruptions_matches_the_trainer():
    from hpc_seaice.cluster.job import EXIT_INTERRUPTED
    from hpc_seaice.command import EXIT_INTERRUPTED as TRAINER_EXIT_INTERRUPTED

    assert EXIT_INTERRUPTED == TRAINER_EXIT_INTERRUPTED == os.EX_TEMPFAIL


def test_cluster_scripts_are_shellcheck_clean():
    import shutil
    import subprocess

    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    scripts = [
        *sorted((ROOT / "tests" / "slurm").glob("*.sh")),
        *sorted((ROOT / "launch").glob("*.sh")),
        *sorted((ROOT / "launch" / "slurm").glob("*.sbatch")),
    ]
    proc = subprocess.run(["shellcheck", "-x", *map(str, scripts)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# The variables a real SLURM (23.02) set in `sbatch -n 2`: the batch script vs a task of `srun`.
BATCH_STEP = {"SLURM_JOB_ID": "79", "SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_JOB_NODELIST": "vm"}
SRUN_TASK = {
    **BATCH_STEP,
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "1",
    "SLURM_STEP_ID": "0",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_STEP_NODELIST": "n[1-2]",
}


def test_srun_task_joins_the_job_world():
    from hpc_seaice.runtime.distributed import detect_environment

    env = detect_environment(SRUN_TASK)
    assert (env.launcher, env.rank, env.world_size, env.local_rank) == ("slurm", 1, 2, 1)
    assert (env.master_addr, env.master_port) == ("n1", 15079)


def test_batch_script_without_srun_runs_alone_and_says_so(capsys):
    from hpc_seaice.runtime.distributed import detect_environment

    env = detect_environment(BATCH_STEP)
    assert (env.launcher, env.rank, env.world_size) == ("single", 0, 1)
    warning = capsys.readouterr().err
    assert "job 79 has 2 tasks" in warning and "not started by srun" in warning


@pytest.mark.parametrize("ranks", ["0", "x", "-1"])
def test_launch_scripts_refuse_a_rank_count_that_is_not_positive(ranks):
    import subprocess

    for script, var in (("torchrun.sh", "NPROC"), ("mpirun.sh", "NP")):
        env = {**os.environ, var: ranks, "MPIRUN": "true"}
        command = ["bash", str(ROOT / "launch" / script), "cfg.yaml"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        assert proc.returncode == 2 and f"got '{ranks}'" in proc.stderr, (script, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
