"""Nothing lost, nothing silently wrong: what a demanding user tries against a run folder.

Missing or damaged checkpoint files, ``latest`` problems, changed configs and data on resume,
a read-only checkpoint folder, two trainings of one folder: each is one line and exit code 2,
or a safe recovery, never a fresh start over existing checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import ROOT, child_env, read_metrics, tiny_diffusion_config, write_config

from hpc_seaice.cli import main
from hpc_seaice.data.format.static import read_static, write_static
from hpc_seaice.errors import UserError
from hpc_seaice.runtime.checkpoint import latest_checkpoint
from hpc_seaice.runtime.integrity import write_meta
from hpc_seaice.runtime.runlock import LOCK_NAME, RunLock

STEP3, STEP6 = "step_00000003", "step_00000006"


def _train(capsys, config: dict, tmp_path, *overrides: str) -> tuple[int, list[str]]:
    path = write_config(tmp_path / "c.yaml", config)
    capsys.readouterr()
    code = main(["train", str(path), *overrides])
    return code, [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]


def _one_line(code: int, err: list[str], *needles: str) -> None:
    assert code == 2 and len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]


@pytest.fixture(scope="module")
def finished(tiny_dataset, tmp_path_factory):
    """A diffusion run of 6 steps with checkpoints at steps 3 and 6 (copy it before changing it)."""
    from hpc_seaice.config import config_from_dict
    from hpc_seaice.train.trainer import run_training

    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, run_dir))) == 0
    return run_dir


@pytest.fixture
def run(finished, tiny_dataset, tmp_path):
    """A private copy of the finished run and the config that extends it to 9 steps."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    return run_dir, tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 9})


def test_missing_latest_resumes_from_the_newest_complete_checkpoint(run, capsys, tmp_path):
    run_dir, config = run
    (run_dir / "checkpoints" / "latest").unlink()
    code, err = _train(capsys, config, tmp_path)
    assert code == 0, err
    assert any("latest is missing; resuming from the newest complete checkpoint step_00000006" in e for e in err)
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(1, 10))  # nothing truncated
    assert {STEP3, STEP6, "step_00000009"} <= {p.name for p in (run_dir / "checkpoints").iterdir()}


def test_step_folders_without_a_complete_checkpoint_are_never_started_over(run, capsys, tmp_path):
    run_dir, config = run
    (run_dir / "checkpoints" / "latest").unlink()
    for name in (STEP3, STEP6):
        (run_dir / "checkpoints" / name / "meta.json").unlink()
    code, err = _train(capsys, config, tmp_path)
    _one_line(code, err, "step_00000003, step_00000006", "refusing to start afresh")
    assert (run_dir / "checkpoints" / STEP6 / "model.pt").is_file()
    assert len(read_metrics(run_dir)) == 6


def _corrupt(path, kind: str) -> None:
    if kind == "garbage":  # fixed bytes: random ones sometimes fail in torch.load with another error type
        path.write_bytes(bytes(range(200)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_hashes(folder) -> None:
    """What a checkpoint written before hashes were recorded looks like (unsigned: it is read
    only with HPC_SEAICE_ACCEPT_UNSIGNED=1)."""
    meta = json.loads((folder / "meta.json").read_text())
    meta.pop("files")
    meta.pop("signature")
    (folder / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("file", "kind", "hashed", "needle"),
    [
        ("model.pt", "garbage", True, "model.pt: changed or damaged since it was written"),
        ("model.pt", "empty", True, "model.pt: changed or damaged"),
        ("optimizer.pt", "truncated", True, "optimizer.pt: changed or damaged"),
        ("trainer_state.pt", "missing", True, "trainer_state.pt: missing from the checkpoint"),
        ("model.pt", "garbage", False, "model.pt: unreadable (UnpicklingError"),
        ("model.pt", "empty", False, "model.pt: unreadable (EOFError"),
        ("model.pt", "no-ema", False, "model.pt: not a checkpoint of this trainer"),
        ("optimizer.pt", "truncated", False, "optimizer.pt: unreadable"),
        ("meta.json", "garbage", True, "meta.json: not valid JSON"),
        ("zero_pp_rank_1_mp_rank_00_optim_states.pt", "added", True, "optim_states.pt: not part of the checkpoint"),
    ],
)
def test_damaged_checkpoint_is_one_line_naming_the_file_and_the_earlier_checkpoint(
    run, capsys, tmp_path, monkeypatch, file, kind, hashed, needle
):
    run_dir, config = run
    folder = run_dir / "checkpoints" / STEP6
    if not hashed:
        _drop_hashes(folder)
        monkeypatch.setenv("HPC_SEAICE_ACCEPT_UNSIGNED", "1")
    if kind == "missing":
        (folder / file).unlink()
    elif kind == "added":  # a file DeepSpeed would find by its name and unpickle, never hashed
        torch.save({"optimizer_state_dict": {}}, folder / file)
    elif kind == "no-ema":
        state = torch.load(folder / file, weights_only=True)
        torch.save({"model": state["model"]}, folder / file)
    else:
        _corrupt(folder / file, kind)
    code, err = _train(capsys, config, tmp_path)
    _one_line(code, err, needle, f"{STEP3} can be used: run.fallback_checkpoint={STEP3}")
    assert len(read_metrics(run_dir)) == 6  # nothing truncated, nothing pruned
    assert {STEP3, STEP6} <= {p.name for p in (run_dir / "checkpoints").iterdir()}

    # The switch named in the message falls back and finishes the run from step 3.
    code, err = _train(capsys, config, tmp_path, "run.fallback_checkpoint=auto")
    assert code == 0, err
    assert any(f"falling back to {STEP3}" in e for e in err), err
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(1, 10))
    assert json.loads((run_dir / "jobs.jsonl").read_text().splitlines()[-1])["start_step"] == 3


def test_explicit_fallback_resumes_from_the_named_checkpoint(run, capsys, tmp_path):
    run_dir, config = run
    _corrupt(run_dir / "checkpoints" / STEP6 / "model.pt", "garbage")
    code, err = _train(capsys, config, tmp_path, "run.fallback_checkpoint=step_3")
    assert code == 0, err
    jobs = [json.loads(line) for line in (run_dir / "jobs.jsonl").read_text().splitlines()]
    assert jobs[-1]["start_step"] == 3
    assert latest_checkpoint(run_dir).name == "step_00000009"


@pytest.mark.parametrize(
    ("fallback", "needle"),
    [("abc", "checkpoint 'abc': expected 'latest'"), ("step_99", "run: no checkpoint for step step_99 (available:")],
)
def test_a_bad_fallback_names_the_config_key_and_why_it_was_needed(run, capsys, tmp_path, fallback, needle):
    run_dir, config = run
    _corrupt(run_dir / "checkpoints" / STEP6 / "model.pt", "garbage")
    code, err = _train(capsys, config, tmp_path, f"run.fallback_checkpoint={fallback}")
    _one_line(code, err, "model.pt: changed or damaged", "config key 'run.fallback_checkpoint': ", needle)
    assert len(read_metrics(run_dir)) == 6


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("latest-folder", "latest: not a text file naming the newest checkpoint"),
        ("latest-outside", "names '../../elsewhere', not a checkpoint folder"),
        ("latest-gone", "latest names step_00000007: "),
        ("run-dir-file", "config key 'run.dir'"),
        ("checkpoints-file", "checkpoints: exists and is not a folder"),
        ("schedule", "config key 'diffusion.schedule' is 'cosine', but checkpoint"),
        ("stage", "'stage' is 'autoencoder', but checkpoint"),
    ],
)
def test_run_folder_problems_are_one_line(run, capsys, tmp_path, setup, needle):
    run_dir, config = run
    root = run_dir / "checkpoints"
    overrides: list[str] = []
    if setup == "latest-folder":
        (root / "latest").unlink()
        (root / "latest").mkdir()
    elif setup == "latest-outside":
        (root / "latest").write_text("../../elsewhere\n")
    elif setup == "latest-gone":
        (root / "latest").write_text("step_00000007\n")
    elif setup == "run-dir-file":
        config["run"]["dir"] = str(tmp_path / "a-file")
        (tmp_path / "a-file").write_text("x")
        needle = f"config key 'run.dir': {tmp_path / 'a-file'} exists and is not a folder"
    elif setup == "checkpoints-file":
        shutil.rmtree(root)
        root.write_text("x")
    elif setup == "schedule":
        overrides = ["diffusion.schedule=cosine"]
    elif setup == "stage":
        config["stage"] = "autoencoder"
        config.pop("unet")
        config["vae"] = {"preset": "tiny-vae"}
    code, err = _train(capsys, config, tmp_path, *overrides)
    _one_line(code, err, needle)
    assert not (run_dir / LOCK_NAME).exists()  # released on the way out


def test_read_only_checkpoint_folder_is_found_at_start(run, tmp_path):
    run_dir, config = run
    path = write_config(tmp_path / "c.yaml", config)
    root = run_dir / "checkpoints"
    train = [sys.executable, "-m", "hpc_seaice", "train", str(path)]
    if os.geteuid() == 0:  # root writes through permissions: a read-only bind mount instead
        script = f'mount --bind -o ro "{root}" "{root}" && exec "$@"'
        probe = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"root without mount namespaces: {probe.stderr.decode().strip()[:200]}")
        command = ["unshare", "-m", "sh", "-c", script, "sh", *train]
    else:
        root.chmod(0o555)
        command = train
    proc = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120)
    root.chmod(0o755)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert f"{root}: not writable" in err[0] and "could not save checkpoints" in err[0]
    assert len(read_metrics(run_dir)) == 6


def test_changed_batch_size_keeps_the_data_position_exact(tiny_dataset, capsys, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 4, "checkpoint_every": 4})
    assert _train(capsys, config, tmp_path)[0] == 0
    config["train"].update({"max_steps": 6, "batch_size": 8})
    code, err = _train(capsys, config, tmp_path)
    assert code == 0, err
    assert any("training continues at sample 16 of the data stream" in e for e in err), err
    state = torch.load(latest_checkpoint(run_dir) / "trainer_state.pt", weights_only=True)
    assert state["step"] == 6 and state["samples_seen"] == 4 * 4 + 2 * 8 and state["batch_size"] == 8


# ---------------------------------------------------------------------------------------------
# the data a run trains on


def test_resume_sample_refuse_other_data_and_accept_a_moved_copy(tiny_dataset, tiny_dataset_64, capsys, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    run_dir = tmp_path / "run"
    config = tiny_diffusion_config(data, run_dir, train={"max_steps": 3})
    assert _train(capsys, config, tmp_path)[0] == 0
    config["train"]["max_steps"] = 6

    # Another grid at another path, and then the same path: refused on resume and in sample.
    code, err = _train(capsys, config, tmp_path, f"data.path={tiny_dataset_64}")
    _one_line(code, err, f"{tiny_dataset_64}: not the data set run", "grid differs: [64, 64] here, [32, 32]")
    shutil.rmtree(data)
    shutil.copytree(tiny_dataset_64, data)
    capsys.readouterr()
    code = main(["sample", "--run", str(run_dir), "--num", "1", "--out", str(tmp_path / "s.nc")])
    _one_line(code, capsys.readouterr().err.strip().splitlines(), "not the data set run", "grid differs")

    # Other statistics with the same grid and mask: refused too.
    shutil.rmtree(data)
    shutil.copytree(tiny_dataset, data)
    static = read_static(data)
    write_static(data, static.mask, static.lat, static.lon, static.mean * 1.01, static.std)
    code, err = _train(capsys, config, tmp_path)
    _one_line(code, err, "normalisation mean differs")

    # The same data set moved elsewhere: fine.
    code, err = _train(capsys, config, tmp_path, f"data.path={tiny_dataset}")
    assert code == 0, err
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(1, 7))


def test_all_land_mask_and_hash_switch_are_checked_at_start(tiny_dataset_copy, capsys, tmp_path):
    config = tiny_diffusion_config(tiny_dataset_copy, tmp_path / "run", train={"max_steps": 1})
    with open(tiny_dataset_copy / "shard-00002.h5", "ab") as handle:
        handle.write(b"appended after the manifest was written")  # readable, but not what was hashed
    code, err = _train(capsys, config, tmp_path)
    assert code == 0, err  # the cheap checks do not read hashes
    code, err = _train(capsys, config, tmp_path, "data.verify_hashes=true", "run.dir=" + str(tmp_path / "r2"))
    _one_line(code, err, "shard-00002.h5: sha256 mismatch")

    static = read_static(tiny_dataset_copy)
    write_static(tiny_dataset_copy, np.zeros_like(static.mask), static.lat, static.lon, static.mean, static.std)
    code, err = _train(capsys, config, tmp_path, "run.dir=" + str(tmp_path / "r3"))
    _one_line(code, err, "mask has no ocean cell")
    assert not (tmp_path / "r3" / "metrics.jsonl").exists()


def test_manifest_shard_paths_may_not_leave_the_folder(tiny_dataset_copy, capsys):
    manifest = json.loads((tiny_dataset_copy / "manifest.json").read_text())
    manifest["shards"][0]["file"] = "../../etc/passwd"
    (tiny_dataset_copy / "manifest.json").write_text(json.dumps(manifest))
    code = main(["data", "verify", str(tiny_dataset_copy)])
    _one_line(code, capsys.readouterr().err.strip().splitlines(), "'../../etc/passwd' is not a file inside")


# ---------------------------------------------------------------------------------------------
# the run lock


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_two_trainings_of_one_folder_one_is_refused_and_the_other_finishes(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_diffusion_config(
        tiny_dataset, run_dir, run={"keep_checkpoints": 2}, train={"max_steps": 20, "checkpoint_every": 2}
    )
    path = write_config(tmp_path / "c.yaml", config)
    command = [sys.executable, "-m", "hpc_seaice", "train", str(path)]
    first = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    second = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = [(p.wait(timeout=300), p.communicate()[1].decode()) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2).strip().splitlines()
    winner = next(p for p, (code, _) in zip((first, second), results) if code == 0)
    assert len(refused) == 1 and "another training runs in this run folder" in refused[0]
    assert f"host {socket.gethostname()}, pid {winner.pid}" in refused[0]
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(1, 21))
    assert latest_checkpoint(run_dir).name == "step_00000020"
    assert not (run_dir / LOCK_NAME).exists()


def test_stale_locks_are_taken_over_and_unknown_holders_named(tmp_path, monkeypatch):
    lock_path = tmp_path / LOCK_NAME
    me = socket.gethostname()
    # A dead process on this host, and a live pid that now belongs to another process.
    for holder in ({"host": me, "pid": _dead_pid()}, {"host": me, "pid": os.getpid(), "start": "1"}):
        lock_path.write_text(json.dumps(holder))
        lock = RunLock(tmp_path)
        lock.acquire()
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
        lock.release()
        assert not lock_path.exists()
    # A live holder on this host: refused, naming it.
    holder = {"host": me, "pid": os.getppid(), "slurm_job_id": "41", "time": time.time()}
    lock_path.write_text(json.dumps(holder))
    with pytest.raises(UserError, match=rf"host {me}, pid {os.getppid()}, SLURM job 41.*wait for it"):
        RunLock(tmp_path).acquire()
    # Another host: cannot be checked from here, so refused with the file to remove ...
    holder = {"host": "elsewhere", "pid": 12, "slurm_job_id": "77", "time": time.time()}
    lock_path.write_text(json.dumps(holder))
    with pytest.raises(UserError, match=f"if that process is gone, remove {lock_path}"):
        RunLock(tmp_path).acquire()
    # ... unless this is the same SLURM job, requeued onto another node.
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    lock = RunLock(tmp_path)
    lock.acquire()
    assert json.loads(lock_path.read_text())["host"] == me
    lock.release()


def test_a_training_killed_with_sigkill_leaves_a_stale_lock_that_the_next_start_takes(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 200, "checkpoint_every": 2})
    path = write_config(tmp_path / "c.yaml", config)
    command = [sys.executable, "-m", "hpc_seaice", "train", str(path)]
    proc = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "checkpoints" / "latest").is_file():
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == proc.pid  # left behind
    done = subprocess.run(
        [*command, "train.max_steps=4"], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert not (run_dir / LOCK_NAME).exists()


@pytest.mark.distributed
def test_deepspeed_checkpoint_with_another_zero_stage_or_a_damaged_file_is_one_line(tiny_dataset, tmp_path):
    run_dir = tmp_path / "ds"
    config = tiny_diffusion_config(
        tiny_dataset, run_dir, engine={"name": "deepspeed", "zero_stage": 1}, train={"max_steps": 3}
    )
    path = write_config(tmp_path / "c.yaml", config)

    def train(*overrides: str, **env: str) -> tuple[int, list[str]]:
        command = [sys.executable, "-m", "hpc_seaice", "train", str(path), "train.max_steps=6", *overrides]
        proc = subprocess.run(command, cwd=ROOT, env=child_env(**env), capture_output=True, text=True, timeout=300)
        return proc.returncode, [line for line in proc.stderr.strip().splitlines() if line.strip()]

    first = subprocess.run(
        [sys.executable, "-m", "hpc_seaice", "train", str(path)], cwd=ROOT, env=child_env(), capture_output=True
    )
    assert first.returncode == 0, first.stderr[-2000:]
    folder = latest_checkpoint(run_dir)
    _one_line(*train("engine.zero_stage=2"), "config key 'engine.zero_stage' is 2", "written with 1")
    optim = next(folder.glob("*optim_states.pt"))
    _corrupt(optim, "truncated")
    _one_line(*train(), f"{optim}: changed or damaged since it was written")
    _drop_hashes(folder)  # as written before hashes and signatures: refused unless trusted
    _one_line(*train(), "meta.json: unsigned checkpoint metadata", "HPC_SEAICE_ACCEPT_UNSIGNED=1")
    _one_line(*train(HPC_SEAICE_ACCEPT_UNSIGNED="1"), f"{folder}: cannot resume from it")  # DeepSpeed's own error


def test_sample_from_a_damaged_checkpoint_names_the_earlier_one(run, capsys, tmp_path):
    run_dir, _ = run
    _corrupt(run_dir / "checkpoints" / STEP6 / "model.pt", "truncated")
    argv = ["sample", "--run", str(run_dir), "--num", "1", "--steps", "2", "--out", str(tmp_path / "s.nc")]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    _one_line(code, err, "model.pt: changed or damaged", f"--checkpoint {STEP3}")
    assert main([*argv, "--checkpoint", STEP3]) == 0 and (tmp_path / "s.nc").is_file()


def test_sample_with_every_checkpoint_damaged_is_one_line_without_a_hint(run, capsys, tmp_path):
    """No earlier checkpoint to name: the damage alone, not an AttributeError on the missing one."""
    run_dir, _ = run
    for step in (STEP3, STEP6):
        _corrupt(run_dir / "checkpoints" / step / "model.pt", "truncated")
    argv = ["sample", "--run", str(run_dir), "--num", "1", "--steps", "2", "--out", str(tmp_path / "s.nc")]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    _one_line(code, err, f"{STEP6}/model.pt: changed or damaged")
    assert "can be used" not in err[0]


def test_sampling_hashes_only_the_weights_not_the_optimizer_state(run, capsys, tmp_path):
    """Inference reads model.pt and trainer_state.pt; the optimizer state (twice the weights) is not read."""
    run_dir, _ = run
    _corrupt(run_dir / "checkpoints" / STEP6 / "optimizer.pt", "truncated")
    argv = ["sample", "--run", str(run_dir), "--num", "1", "--steps", "2", "--out", str(tmp_path / "s.nc")]
    assert main(argv) == 0 and (tmp_path / "s.nc").is_file()
    _corrupt(run_dir / "checkpoints" / STEP6 / "trainer_state.pt", "truncated")
    capsys.readouterr()
    code = main([*argv, "--overwrite"])
    _one_line(code, capsys.readouterr().err.strip().splitlines(), "trainer_state.pt: changed or damaged")


def test_sampling_refuses_weights_that_the_hash_table_does_not_list(run, capsys, tmp_path):
    """A checkpoint with a hash table that lacks model.pt: the weights were put there later (or the
    table edited); inference, which checks only what it reads, must not load them unchecked."""
    run_dir, _ = run
    meta_path = run_dir / "checkpoints" / STEP6 / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["files"]["model.pt"]
    write_meta(meta_path.parent, meta)  # signed: as if written so (an unsigned edit fails the signature first)
    argv = ["sample", "--run", str(run_dir), "--num", "1", "--steps", "2", "--out", str(tmp_path / "s.nc")]
    capsys.readouterr()
    code = main(argv)
    _one_line(code, capsys.readouterr().err.strip().splitlines(), "model.pt: not part of the checkpoint as written")


@pytest.mark.parametrize(
    ("setup", "needle", "usable"),
    [
        ("no-latest", "checkpoints/latest is missing;", STEP6),  # said "no checkpoint yet"
        ("latest-gone", "latest names step_00000007, which is missing or incomplete", STEP6),
        ("no-model", "latest names step_00000006, which is missing or incomplete", STEP3),
    ],
)
def test_sample_with_a_broken_latest_names_a_checkpoint_that_works(run, capsys, tmp_path, setup, needle, usable):
    run_dir, _ = run
    root = run_dir / "checkpoints"
    if setup == "no-latest":
        (root / "latest").unlink()
    elif setup == "latest-gone":
        (root / "latest").write_text("step_00000007\n")
    else:
        (root / STEP6 / "model.pt").unlink()
    argv = ["sample", "--run", str(run_dir), "--num", "1", "--steps", "2", "--out", str(tmp_path / "s.nc")]
    capsys.readouterr()
    code = main(argv)
    _one_line(code, capsys.readouterr().err.strip().splitlines(), needle, f"can be used: --checkpoint {usable}")
    assert main([*argv, "--checkpoint", usable]) == 0 and (tmp_path / "s.nc").is_file()


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_nothing_half_written(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 6})
    path = write_config(tmp_path / "c.yaml", config)
    # The small file system exists only inside the child's mount namespace: list what is left there.
    script = (
        f'mount -t tmpfs -o size=256k,mode=0755 tmpfs "{run_dir}" || exit 9; '
        f'"$@"; rc=$?; echo LEFT; ls -A "{run_dir}/checkpoints"; exit $rc'
    )
    command = ["unshare", "-m", "sh", "-c", script, "sh", sys.executable, "-m", "hpc_seaice", "train", str(path)]
    if os.geteuid() != 0 or subprocess.run([*command[:5], "sh", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs root with mount namespaces for a small file system")
    proc = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert "cannot write checkpoint" in err[0] and "MB free there" in err[0], err
    assert proc.stdout.split("LEFT")[-1].split() == []  # no half-written checkpoint, no latest
