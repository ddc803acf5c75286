"""Multi-node for real, on the two-host cluster of tests/slurm/two_nodes.sh (hosts n1 and n2 in
network namespaces, one slurmd each, gloo pinned to ``hsnet0``; see tests/conftest_slurm.py).

- ``hpc-seaice submit --nodes 2``: 4-rank DDP across both hosts on the 1-process trajectory;
  DeepSpeed ZeRO-2 across both hosts with a checkpoint and a resume;
- ``launch/slurm/multinode_torchrun.sbatch``: one torchrun per host, c10d rendezvous on n1;
- ``hpc-seaice encode`` and ``hpc-seaice sample`` under ``srun -N 2``: every shard / sample once;
- ``python -m benchmarks.scaling --slurm``: one job per configuration, the 2-node jobs on n1 and
  n2, a table with efficiencies; a re-run skips what is done; a job that cannot start is reported;
- faults: the link to n2 cut mid-run (every rank fails within ``engine.timeout_s`` naming the lost
  host, the checkpoint survives, the same command resumes); the worker on n2 killed under
  ``torchrun --max-restarts=1`` (both hosts restart from the last checkpoint).

Every test asserts on what the jobs produced (losses, logged steps, checkpoints, shards, samples).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    assert_close_trajectories,
    free_port,
    hpc_seaice,
    logged_steps,
    losses,
    tiny_autoencoder_config,
    tiny_diffusion_config,
    write_config,
)

from hpc_seaice.runtime.checkpoint import latest_checkpoint, load_states

pytestmark = pytest.mark.multinode

SUBMIT_2x2 = ("--nodes=2", "--gpus-per-node=0", "--tasks-per-node=2", "--time=10")
SUBMIT_2x1 = ("--nodes=2", "--gpus-per-node=0", "--tasks-per-node=1", "--time=10")
STEPS = 6  # the tiny trajectory: global batch 4, warm-up 2, checkpoints every 3 steps


def job_id(stdout: str) -> str:
    (job,) = re.findall(r"submitted job (\d+)", stdout)
    return job


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def submit_and_wait(cluster, path: Path, run_dir: Path, resources: tuple[str, ...]) -> tuple[str, str]:
    """``hpc-seaice submit PATH RESOURCES --wait``: the job id (the job must have COMPLETED) and the
    log of its task 0."""
    proc = cluster.hpc_seaice("submit", str(path), *resources, "--wait", timeout=240)
    job = job_id(proc.stdout)
    assert f"job {job}: COMPLETED" in proc.stdout, proc.stdout
    return job, (run_dir / "slurm" / f"{job}_0_log.out").read_text()


def text_of(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def wait_until(predicate, timeout: float, what: str, poll: float = 0.1) -> float:
    """Poll until ``predicate()``; return the seconds it took (fail after ``timeout``)."""
    t0 = time.time()
    while not predicate():
        if time.time() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll)
    return time.time() - t0


def marked_processes(marker: str, **required: str) -> list[int]:
    """Pids of processes started with ``HPC_SEAICE_TEST_MARKER=marker`` (and the other variables,
    "" meaning "set to anything"): jobs on both hosts are processes of this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        if env.get(b"HPC_SEAICE_TEST_MARKER") != marker.encode():
            continue
        if all(
            key.encode() in env and (not value or env[key.encode()] == value.encode())
            for key, value in required.items()
        ):
            found.append(int(entry.name))
    return found


def parent(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE).group(1))


@pytest.fixture(scope="module")
def reference(tiny_dataset, tmp_path_factory) -> dict[int, float]:
    """1 process, one thread like each rank, global batch 4 = 1 x 4 accumulation x 1: the
    trajectory every multi-node run below must follow (micro-batches of 1 everywhere)."""
    folder = tmp_path_factory.mktemp("reference")
    run_dir = folder / "run"
    path = write_config(folder / "c.yaml", tiny_diffusion_config(tiny_dataset, run_dir))
    hpc_seaice("train", str(path), "train.grad_accum=4", timeout=180)
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    return losses(run_dir)


# --------------------------------------------------------------------------------------------
# training across both hosts


def test_submit_ddp_four_ranks_on_two_hosts_follow_the_single_process_trajectory(
    two_node_cluster, tiny_dataset, tmp_path, reference
):
    run_dir = tmp_path / "ddp"
    path = write_config(tmp_path / "c.yaml", tiny_diffusion_config(tiny_dataset, run_dir))
    t0 = time.time()
    job, log = submit_and_wait(two_node_cluster, path, run_dir, SUBMIT_2x2)
    assert "4 rank(s) on 2 host(s) [n1, n2] via slurm" in log, log
    assert "global batch 4 = 1 x 1 x 4" in log, log
    (start,) = read_jsonl(run_dir / "jobs.jsonl")
    assert start["world_size"] == 4 and start["hosts"] == ["n1", "n2"] and start["slurm_job_id"] == job
    # two tasks per host: submitit logs each task's placement
    placement = [(run_dir / "slurm" / f"{job}_{task}_log.out").read_text() for task in range(4)]
    hosts = [re.search(r"JobEnvironment\(.*hostname=(\w+)", text).group(1) for text in placement]
    assert sorted(hosts) == ["n1", "n1", "n2", "n2"], hosts
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    assert_close_trajectories(losses(run_dir), reference)
    assert latest_checkpoint(run_dir).name == f"step_{STEPS:08d}"
    print(f"4-rank DDP on 2 hosts: {time.time() - t0:.1f} s")


def test_submit_deepspeed_zero2_on_two_hosts_checkpoints_and_resumes(
    two_node_cluster, tiny_dataset, tmp_path, reference
):
    run_dir = tmp_path / "zero2"
    config = tiny_diffusion_config(
        tiny_dataset, run_dir, engine={"name": "deepspeed", "zero_stage": 2}, train={"grad_accum": 2}
    )
    path = write_config(tmp_path / "c.yaml", config)
    t0 = time.time()
    job1, log1 = submit_and_wait(two_node_cluster, path, run_dir, SUBMIT_2x1)
    assert "2 rank(s) on 2 host(s) [n1, n2] via slurm | engine deepspeed ZeRO-2" in log1, log1
    assert "global batch 4 = 1 x 2 x 2" in log1 and "fresh start" in log1, log1
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    assert_close_trajectories(losses(run_dir), reference)
    # ZeRO-2: each rank wrote its own optimizer partition into the shared checkpoint folder
    for step in (3, STEPS):
        folder = run_dir / "checkpoints" / f"step_{step:08d}"
        partitions = sorted(p.name for p in folder.rglob("*optim_states.pt"))
        assert len(partitions) == 2 and "rank_0" in partitions[0] and "rank_1" in partitions[1], partitions

    # Lose the last checkpoint (as if the job had died after step 3) and submit the same command again.
    shutil.rmtree(run_dir / "checkpoints" / f"step_{STEPS:08d}")
    (run_dir / "checkpoints" / "latest").write_text("step_00000003\n")
    job2, log2 = submit_and_wait(two_node_cluster, path, run_dir, SUBMIT_2x1)
    assert job2 != job1
    assert "resuming from step 3" in log2 and "[n1, n2]" in log2, log2
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))  # steps 4..6 logged once more, not twice
    starts = read_jsonl(run_dir / "jobs.jsonl")
    assert [(s["slurm_job_id"], s["start_step"], s["hosts"]) for s in starts] == [
        (job1, 0, ["n1", "n2"]),
        (job2, 3, ["n1", "n2"]),
    ]
    assert_close_trajectories(losses(run_dir), reference)  # the resumed steps 4..6 too
    assert latest_checkpoint(run_dir).name == f"step_{STEPS:08d}"
    print(f"DeepSpeed ZeRO-2 on 2 hosts, 6 steps + resume from 3: {time.time() - t0:.1f} s")


TORCHRUN_2x1 = ("--nodes=2", "--cpus-per-task=2")  # multinode_torchrun.sbatch: one torchrun per host


def test_multinode_torchrun_sbatch_trains_across_both_hosts(two_node_cluster, tiny_dataset, tmp_path, reference):
    run_dir = tmp_path / "torchrun"
    path = write_config(tmp_path / "c.yaml", tiny_diffusion_config(tiny_dataset, run_dir, train={"grad_accum": 2}))
    log = tmp_path / "job.out"
    t0 = time.time()
    env = two_node_cluster.env(NPROC_PER_NODE="1", RDZV_PORT=str(free_port()))
    job = two_node_cluster.sbatch_launch("multinode_torchrun.sbatch", TORCHRUN_2x1, str(path), log=log, env=env)
    state = two_node_cluster.wait_job(job, timeout=180)
    text = log.read_text()
    assert state == "COMPLETED", text
    assert "2 node(s) x 1 worker(s), rendezvous n1:" in text, text
    assert "2 rank(s) on 2 host(s) [n1, n2] via torchrun" in text, text
    (start,) = read_jsonl(run_dir / "jobs.jsonl")
    assert start["hosts"] == ["n1", "n2"] and start["slurm_job_id"] == job
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    assert_close_trajectories(losses(run_dir), reference)
    print(f"multinode_torchrun.sbatch, 2 hosts x 1 worker: {time.time() - t0:.1f} s")


# --------------------------------------------------------------------------------------------
# encode and sample: work split across the hosts, every shard / sample exactly once


def srun_on_both_hosts(cluster, folder: Path, *args: str, timeout: float = 180) -> list[str]:
    """``srun -N 2 -n 2 python -m hpc_seaice ARGS`` from n1; returns the host of rank 0 and 1."""
    script = f'hostname > {folder}/host-$SLURM_PROCID && exec "$@"'
    srun = ("srun", "-N", "2", "-n", "2", "--ntasks-per-node=1", "bash", "-c", script, "task")
    cluster.run(*srun, sys.executable, "-m", "hpc_seaice", *args, timeout=timeout)
    return [(folder / f"host-{rank}").read_text().strip() for rank in range(2)]


def shard_arrays(folder: Path) -> tuple[list, np.ndarray, np.ndarray]:
    """(manifest shards in manifest order, their times and latent means, concatenated)."""
    import h5py

    from hpc_seaice.data.format.manifest import read_manifest

    manifest = read_manifest(folder)
    times, values = [], []
    for shard in manifest.shards:
        with h5py.File(folder / shard.file, "r") as handle:
            assert len(handle["time"]) == shard.count, shard
            times.append(handle["time"][:])
            values.append(handle["fields"][:])
    return manifest.shards, np.concatenate(times), np.concatenate(values)


def test_encode_on_two_hosts_writes_every_sample_once(two_node_cluster, tiny_dataset, tmp_path):
    from hpc_seaice.config import config_from_dict
    from hpc_seaice.data.format.manifest import read_manifest
    from hpc_seaice.data.format.verify import split_counts
    from hpc_seaice.inference.encode import encode_dataset
    from hpc_seaice.runtime.distributed import DistEnv
    from hpc_seaice.train.trainer import run_training

    vae_run = tmp_path / "vae"
    config = tiny_autoencoder_config(tiny_dataset, vae_run, train={"max_steps": 2, "checkpoint_every": 2})
    assert run_training(config_from_dict(config)) == 0
    out = tmp_path / "latents"
    t0 = time.time()
    args = ("--autoencoder", str(vae_run), "--data", str(tiny_dataset), "--out", str(out), "--batch-size", "4")
    hosts = srun_on_both_hosts(two_node_cluster, tmp_path, "encode", *args)
    seconds = time.time() - t0
    assert hosts == ["n1", "n2"]

    fields = read_manifest(tiny_dataset)
    shards, times, latents = shard_arrays(out)
    # every split was split between the two ranks, each writing its own shards
    for split, count in split_counts(tiny_dataset).items():
        mine = {rank: sum(s.count for s in shards if s.file.startswith(f"{split}-r{rank:03d}-")) for rank in (0, 1)}
        assert mine[0] + mine[1] == count and min(mine.values()) >= count // 2, (split, mine)
    assert sum(s.count for s in shards) == fields.num_samples == len(times)
    assert np.all(np.diff(times) > 0), "latent times repeat or go backwards"
    _, field_times, _ = shard_arrays(tiny_dataset)
    np.testing.assert_array_equal(times, field_times)  # the same samples, each once, in order
    assert read_manifest(out).source["autoencoder_run"] == str(vae_run.resolve())
    assert not list(out.glob(".*tmp*")), "a shard was left half-written"

    # the latents are those of one process encoding everything
    single = tmp_path / "latents-1"
    encode_dataset(str(vae_run), str(tiny_dataset), str(single), 4, False, DistEnv(hostname="local"))
    _, single_times, single_latents = shard_arrays(single)
    np.testing.assert_array_equal(single_times, times)
    np.testing.assert_allclose(latents, single_latents, rtol=1e-4, atol=1e-5)
    print(f"encode on 2 hosts ({fields.num_samples} samples): {seconds:.1f} s")


def test_sample_on_two_hosts_writes_every_sample_once(two_node_cluster, tiny_dataset, tmp_path):
    import xarray as xr

    from hpc_seaice.config import config_from_dict
    from hpc_seaice.train.trainer import run_training

    run = tmp_path / "diffusion"
    assert run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, run, train={"max_steps": 2}))) == 0
    num = 6
    common = ("sample", "--run", str(run), "--num", str(num), "--steps", "2", "--seed", "7", "--batch-size", "2")
    two = tmp_path / "two-hosts.nc"
    t0 = time.time()
    hosts = srun_on_both_hosts(two_node_cluster, tmp_path, *common, "--out", str(two))
    seconds = time.time() - t0
    assert hosts == ["n1", "n2"]
    assert not (tmp_path / "two-hosts.nc.parts").exists()
    one = tmp_path / "one-process.nc"
    hpc_seaice(*common, "--batch-size", "4", "--out", str(one), timeout=180)  # other batches, same samples

    with xr.open_dataset(two, engine="h5netcdf") as a, xr.open_dataset(one, engine="h5netcdf") as b:
        assert a.sizes["sample"] == num and b.sizes["sample"] == num
        assert a.attrs["seed"] == 7 and a.attrs["steps"] == 2
        names = [name for name in a.data_vars if a[name].dims == ("sample", "y", "x")]
        assert len(names) >= 5, names
        for name in names:
            values = a[name].values
            assert np.isfinite(values).all(), name
            np.testing.assert_allclose(values, b[name].values, rtol=1e-4, atol=1e-5, err_msg=name)
        # no sample duplicated: every pair of samples differs somewhere
        first = a[names[0]].values.reshape(num, -1)
        assert len({row.tobytes() for row in first}) == num
    print(f"sample on 2 hosts ({num} samples): {seconds:.1f} s")


# --------------------------------------------------------------------------------------------
# faults


def test_link_cut_fails_every_rank_within_the_timeout_and_the_same_command_resumes(
    two_node_cluster, tiny_dataset, tmp_path
):
    timeout_s, max_steps = 15, 60
    run_dir = tmp_path / "cut"
    config = tiny_diffusion_config(
        tiny_dataset, run_dir, train={"max_steps": max_steps, "checkpoint_every": 5}, engine={"timeout_s": timeout_s}
    )
    path = write_config(tmp_path / "c.yaml", config)
    logs = tmp_path / "logs"
    logs.mkdir()
    marker = uuid.uuid4().hex
    # one task per host; each task's output goes straight to a file on its host (readable here
    # while the link is down: both "hosts" share this machine's file system)
    srun = ("srun", "-N", "2", "-n", "2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", f"--job-name=cut-{marker}")
    command = (*srun, f"--output={logs}/%t.out", f"--error={logs}/%t.err", sys.executable, "-m", "hpc_seaice")
    command = (*command, "train", str(path))
    env = two_node_cluster.env(HPC_SEAICE_TEST_MARKER=marker)
    proc = two_node_cluster.popen(*command, env=env)
    try:
        wait_until(lambda: latest_checkpoint(run_dir) is not None, 120, "first checkpoint")
        before = int(latest_checkpoint(run_dir).name.split("_")[1])
        two_node_cluster.set_link("n2", up=False)
        cut = time.time()
        assert before < max_steps
        errors = [logs / f"{rank}.err" for rank in (0, 1)]
        failed_after = []
        for err in errors:
            wait_until(lambda e=err: "train: error" in text_of(e), timeout_s + 30, f"the error in {err.name}")
            failed_after.append(time.time() - cut)
        wait_until(lambda: not marked_processes(marker, SLURM_PROCID=""), 20, "every rank exited")
        exited_after = time.time() - cut
    finally:
        two_node_cluster.set_link("n2", up=True)
        two_node_cluster.resume_nodes()
    # srun itself may never learn that the task on n2 ended: slurmstepd's task-exit message was lost
    # while the link was down ("Failed to send MESSAGE_TASK_EXIT: Network is unreachable"), SLURM
    # does not resend it, and srun waits on (scancel does not end it). The ranks are gone (checked
    # above); stop srun and the job the way an operator, or the job's time limit, would.
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)
        two_node_cluster.run("scancel", f"--name=cut-{marker}", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    queued = ("squeue", "-h", f"--name=cut-{marker}")
    wait_until(lambda: not two_node_cluster.run(*queued, check=False).stdout.strip(), 60, "the job to end", poll=1.0)
    texts = [err.read_text() for err in errors]
    print(
        f"link cut after checkpoint {before}: ranks failed {failed_after[0]:.1f} / {failed_after[1]:.1f} s "
        f"after the cut, all exited after {exited_after:.1f} s"
    )
    # every rank failed within about the collective timeout (the first failure is the time-out itself;
    # a rank may reach the next collective up to one step later), none hung
    assert max(failed_after) < timeout_s + 20 and exited_after < timeout_s + 30, (failed_after, exited_after)
    # ... and said which host it lost
    assert "rank 0 on n1: a collective failed or timed out (engine.timeout_s=15)" in texts[0], texts[0]
    assert "lost peer: n2 (10.77.0.2) with rank 1" in texts[0], texts[0]
    assert "rank 1 on n2: a collective failed or timed out" in texts[1], texts[1]
    assert "lost peer: n1 (10.77.0.1) with rank 0" in texts[1], texts[1]

    # the last checkpoint is intact: `latest` names a complete folder that loads
    folder = latest_checkpoint(run_dir)
    assert int(folder.name.split("_")[1]) >= before
    model_state, trainer_state = load_states(folder, torch.device("cpu"))
    assert trainer_state["step"] == int(folder.name.split("_")[1]) and "model" in model_state
    assert {p.name for p in folder.iterdir()} >= {"model.pt", "trainer_state.pt", "meta.json"}
    assert f"last checkpoint: {folder}" in texts[0]
    resumed_from = trainer_state["step"]
    assert resumed_from < max_steps

    # the link is back: the same command resumes from it and logs every step once
    t0 = time.time()
    two_node_cluster.run(*command, env=env, timeout=180)
    out = (logs / "0.out").read_text()
    assert f"resuming from step {resumed_from}" in out and "[n1, n2]" in out, out
    assert logged_steps(run_dir) == list(range(1, max_steps + 1))
    assert latest_checkpoint(run_dir).name == f"step_{max_steps:08d}"
    print(f"resumed run on 2 hosts: {time.time() - t0:.1f} s")


def test_killed_worker_on_n2_restarts_both_hosts_from_the_last_checkpoint(two_node_cluster, tiny_dataset, tmp_path):
    max_steps = 40
    run_dir = tmp_path / "restart"
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": max_steps, "checkpoint_every": 5})
    path = write_config(tmp_path / "c.yaml", config)
    log = tmp_path / "job.out"
    marker = uuid.uuid4().hex
    env = two_node_cluster.env(
        NPROC_PER_NODE="1", MAX_RESTARTS="1", RDZV_PORT=str(free_port()), HPC_SEAICE_TEST_MARKER=marker
    )
    t0 = time.time()
    job = two_node_cluster.sbatch_launch("multinode_torchrun.sbatch", TORCHRUN_2x1, str(path), log=log, env=env)
    wait_until(lambda: latest_checkpoint(run_dir) is not None, 120, "first checkpoint")
    # the worker on n2 (torchrun sets LOCAL_RANK for its workers, not for itself); its agent lives on
    workers = marked_processes(marker, SLURMD_NODENAME="n2", LOCAL_RANK="0")
    agents = [pid for pid in marked_processes(marker, SLURMD_NODENAME="n2") if pid not in workers]
    assert len(workers) == 1, workers
    killed_after = int(latest_checkpoint(run_dir).name.split("_")[1])
    os.kill(workers[0], signal.SIGKILL)

    def restarted() -> list[int]:  # a new worker on n2, started by the same (surviving) torchrun agent
        pids = [p for p in marked_processes(marker, SLURMD_NODENAME="n2", LOCAL_RANK="0") if p != workers[0]]
        return [p for p in pids if parent(p) in agents]

    wait_until(restarted, 90, "the torchrun agent on n2 to restart its worker", poll=0.05)
    assert two_node_cluster.wait_job(job, timeout=240) == "COMPLETED", log.read_text()
    text = log.read_text()
    assert text.count("hpc-seaice train |") == 2, text  # the first start and one restart
    assert "2 rank(s) on 2 host(s) [n1, n2] via torchrun" in text, text
    resumed = [int(n) for n in re.findall(r"resuming from step (\d+)", text)]
    assert len(resumed) == 1 and resumed[0] >= killed_after, (resumed, killed_after)
    starts = read_jsonl(run_dir / "jobs.jsonl")
    assert [(s["slurm_job_id"], s["start_step"], s["hosts"]) for s in starts] == [
        (job, 0, ["n1", "n2"]),
        (job, resumed[0], ["n1", "n2"]),
    ]
    assert logged_steps(run_dir) == list(range(1, max_steps + 1))  # every step logged once
    assert latest_checkpoint(run_dir).name == f"step_{max_steps:08d}"
    print(f"worker on n2 killed after checkpoint {killed_after}, restarted from {resumed[0]}: {time.time() - t0:.1f} s")


# --------------------------------------------------------------------------------------------
# the scaling benchmark as SLURM jobs

BENCH_QUICK = ("--quick", "--gpus-per-node", "0", "--tasks-per-node", "2", "--max-concurrent", "1")


def scaling_benchmark(cluster, out: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    command = (sys.executable, "-m", "benchmarks.scaling", "--slurm", *BENCH_QUICK, "--out", str(out))
    command = (*command, "--work", str(out.parent / "work"), *args)
    return cluster.run(*command, timeout=timeout, check=False)


def test_scaling_benchmark_runs_one_job_per_configuration_across_both_hosts(two_node_cluster, tmp_path):
    out = tmp_path / "results"
    t0 = time.time()
    proc = scaling_benchmark(two_node_cluster, out, "--nodes", "1,2")
    seconds = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "scaling_slurm.json").read_text())
    rows = {r["name"]: r for r in record["results"]}
    assert sorted(rows) == sorted(f"{s}-{m}" for s in ("data", "latent") for m in ("base-1n", "weak-2n", "strong-2n"))
    assert len({r["job_id"] for r in rows.values()}) == 6  # one SLURM job each
    for name, r in rows.items():
        assert r["status"] == "ok" and r["state"] == "COMPLETED", (name, r)
        assert r["samples_per_s"] > 0 and r["step_time_s"] > 0 and 0 <= r["data_wait_fraction"] <= 1, r
        assert r["hosts"] == (["n1", "n2"] if r["nodes"] == 2 else r["hosts"][:1]) and len(r["hosts"]) == r["nodes"]
        assert r["ranks"] == 2 * r["nodes"]
        # submitted by hpc-seaice submit's code: its records, its log files
        run_dir = Path(record["work"]) / name
        (submitted,) = read_jsonl(run_dir / "slurm" / "submitted.jsonl")
        assert submitted["job_id"] == r["job_id"] and Path(r["log"]).is_file()
        (start,) = read_jsonl(run_dir / "jobs.jsonl")
        assert start["world_size"] == r["ranks"]
        if r["nodes"] == 2:  # DDP across hosts: the probe timed the gradient all-reduce
            assert 0 < r["allreduce_share"] <= 1, r
    for space in ("data", "latent"):
        base, weak, strong = (rows[f"{space}-{m}"] for m in ("base-1n", "weak-2n", "strong-2n"))
        assert base["weak_efficiency"] == base["strong_efficiency"] == 1.0
        assert weak["global_batch"] == 2 * base["global_batch"] and strong["global_batch"] == base["global_batch"]
        assert weak["weak_efficiency"] == pytest.approx(weak["samples_per_s"] / (2 * base["samples_per_s"]))
        assert strong["strong_efficiency"] == pytest.approx(strong["samples_per_s"] / (2 * base["samples_per_s"]))
    ratios = {r["nodes"]: r for r in record["latent_over_data"]}
    assert sorted(ratios) == [1, 2]
    assert ratios[2]["weak"] == pytest.approx(
        rows["latent-weak-2n"]["samples_per_s"] / rows["data-weak-2n"]["samples_per_s"]
    )
    md = (out / "scaling_slurm.md").read_text()
    assert md.count("| ok |") == 6 and "weak eff." in md and "latent / data" in md, md
    assert (out / "scaling_slurm.png").stat().st_size > 0
    print(f"scaling benchmark, 6 jobs on 2 hosts: {seconds:.1f} s")

    # a re-run submits nothing: every configuration has its result
    before = two_node_cluster.run("sacct", "-X", "-n", "-P", "-o", "JobID").stdout.split()
    again = scaling_benchmark(two_node_cluster, out, "--nodes", "1,2", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("result exists") == 6, again.stdout
    assert two_node_cluster.run("sacct", "-X", "-n", "-P", "-o", "JobID").stdout.split() == before
    assert {r["job_id"] for r in json.loads((out / "scaling_slurm.json").read_text())["results"]} == {
        r["job_id"] for r in rows.values()
    }


def test_scaling_benchmark_reports_a_job_that_cannot_start_and_does_not_wait_for_it(two_node_cluster, tmp_path):
    two_node_cluster.run("scontrol", "update", "nodename=n2", "state=drain", "reason=scaling-test")
    try:
        out = tmp_path / "results"
        t0 = time.time()
        proc = scaling_benchmark(two_node_cluster, out, "--nodes", "2", "--space", "data", timeout=300)
        seconds = time.time() - t0
    finally:
        two_node_cluster.resume_nodes()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = json.loads((out / "scaling_slurm.json").read_text())["results"]
    assert [r["name"] for r in rows] == ["data-base-2n"]
    (row,) = rows
    assert row["state"] == "PENDING" and row["status"].startswith(f"job {row['job_id']}: cannot start: PENDING ("), row
    assert "a node it needs is down, drained or reserved" in row["status"], row
    assert row["log"].endswith(f"{row['job_id']}_0_log.out")
    assert seconds < 120, seconds  # the grace period, not a time-out
    assert two_node_cluster.wait_job(row["job_id"], timeout=60) == "CANCELLED"  # not left in the queue
    md = (out / "scaling_slurm.md").read_text()
    assert "**job " in md and "cannot start" in md and row["log"] in md, md
