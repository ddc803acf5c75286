"""The trainer on one process: stages, checkpoints, exact resume, faults, user errors."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from helpers import (
    ROOT,
    child_env,
    hpc_seaice,
    losses,
    read_metrics,
    tiny_autoencoder_config,
    tiny_diffusion_config,
    write_config,
)

from hpc_seaice.command import EXIT_INTERRUPTED, EXIT_NONFINITE
from hpc_seaice.config import config_from_dict
from hpc_seaice.inference.loading import load_inference_model
from hpc_seaice.runtime.checkpoint import latest_checkpoint
from hpc_seaice.runtime.integrity import META_NAME, file_hashes, write_meta
from hpc_seaice.runtime.stopping import STOP_FILE, StopRequest
from hpc_seaice.train.engines import decay_groups, lr_at, lr_multiplier
from hpc_seaice.train.trainer import FAULT_NAN_STEPS, run_training


def test_diffusion_trains_checkpoints_and_resumes_bitwise(tiny_dataset, tmp_path):
    straight = tmp_path / "straight"
    assert run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, straight))) == 0
    metrics = read_metrics(straight)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "lr", "samples_per_s", "grad_norm", "data_wait_s", "memory_mb"):
        assert all(key in m for m in metrics), key
    assert (straight / "config.yaml").is_file() and (straight / "tensorboard").is_dir()
    assert latest_checkpoint(straight).name == "step_00000006"
    assert sorted(p.name for p in (straight / "checkpoints").glob("step_*")) == ["step_00000003", "step_00000006"]

    # The same run, cut after step 3 (simulated by deleting what came after the checkpoint),
    # then re-run with the same command: it resumes from step 3 and repeats steps 4-6 exactly.
    resumed = tmp_path / "resumed"
    cfg = config_from_dict(tiny_diffusion_config(tiny_dataset, resumed))
    assert run_training(cfg) == 0
    shutil.rmtree(resumed / "checkpoints" / "step_00000006")
    (resumed / "checkpoints" / "latest").write_text("step_00000003\n")
    _as_written_with_a_scheduler(resumed / "checkpoints" / "step_00000003")
    assert run_training(cfg) == 0
    assert [m["step"] for m in read_metrics(resumed)] == [1, 2, 3, 4, 5, 6]  # each step logged once
    assert losses(resumed) == losses(straight)  # bitwise on one process
    jobs = [json.loads(line) for line in (resumed / "jobs.jsonl").read_text().splitlines()]
    assert [j["start_step"] for j in jobs] == [0, 3]
    # The rate of each step is a function of the step alone, also across the resume.
    expected = [lr_at(m["step"] - 1, cfg.optim, cfg.train.max_steps) for m in read_metrics(resumed)]
    assert [m["lr"] for m in read_metrics(resumed)] == pytest.approx(expected, rel=1e-12)


def _as_written_with_a_scheduler(folder):
    """Make a checkpoint look like one of the versions that saved an LR scheduler state (ignored now)."""
    state = torch.load(folder / "optimizer.pt", weights_only=True)
    state["scheduler"] = {"last_epoch": 999, "base_lrs": [5.0, 5.0], "_last_lr": [5.0, 5.0]}
    torch.save(state, folder / "optimizer.pt")
    meta = json.loads((folder / META_NAME).read_text())
    meta["files"] = file_hashes(folder)
    write_meta(folder, meta)  # signed, as those versions' own checkpoint


def test_stop_file_checkpoints_at_the_next_step_boundary_and_resume_continues_exactly(tiny_dataset, tmp_path):
    reference = tmp_path / "reference"
    assert run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, reference))) == 0

    run_dir = tmp_path / "stopped"
    cfg = config_from_dict(tiny_diffusion_config(tiny_dataset, run_dir))
    run_dir.mkdir()
    for stopped_at in (1, 2):  # the file is there before the run: it stops after its first step
        (run_dir / STOP_FILE).touch()
        assert run_training(cfg) == EXIT_INTERRUPTED
        assert latest_checkpoint(run_dir).name == f"step_{stopped_at:08d}"
        assert not (run_dir / STOP_FILE).exists()  # acted on and removed: the same command resumes
    assert run_training(cfg) == 0
    assert [m["step"] for m in read_metrics(run_dir)] == [1, 2, 3, 4, 5, 6]
    assert losses(run_dir) == losses(reference)  # bitwise on one process


def test_stop_request_records_signals_and_a_second_ctrl_c_stops_at_once(tmp_path):
    stop = StopRequest(tmp_path, watch_file=True)
    stop.install()
    try:
        assert stop.requested == 0
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested == 1 and stop.description == "stop signal (SIGTERM)"
        second = StopRequest()
        second.install()
        signal.raise_signal(signal.SIGINT)
        assert second.description == "stop signal (SIGINT)"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        second.restore()
    finally:
        stop.restore()
    by_file = StopRequest(tmp_path, watch_file=True)
    assert by_file.requested == 0
    (tmp_path / STOP_FILE).touch()
    assert by_file.requested == 1 and by_file.description == f"stop file ({tmp_path / STOP_FILE})"
    assert StopRequest(tmp_path, watch_file=False).requested == 0  # only rank 0 looks for the file


def test_sigterm_stops_a_training_process_with_a_checkpoint_and_exit_75(tiny_dataset, tmp_path):
    # The signal path end to end, in a child process. The run is far too long to finish, so the
    # signal, sent once two steps are logged (the handlers are installed before the first step),
    # always lands in the training loop, however fast the machine.
    run_dir = tmp_path / "interrupted"
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 1_000_000, "checkpoint_every": 10**6})
    path = write_config(tmp_path / "run.yaml", config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpc_seaice", "train", str(path)],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while not ((run_dir / "metrics.jsonl").is_file() and len(read_metrics(run_dir)) >= 2):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "no step"
            time.sleep(0.05)
        logged = len(read_metrics(run_dir))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "stop signal (SIGTERM)" in out
    assert int(latest_checkpoint(run_dir).name.split("_")[1]) >= logged
    assert not (run_dir / "run.lock").exists()


def test_autoencoder_stage_learns_and_loads_for_inference(tiny_dataset, tmp_path):
    run_dir = tmp_path / "vae"
    config = tiny_autoencoder_config(tiny_dataset, run_dir, train={"max_steps": 30, "checkpoint_every": 30})
    config["optim"] = {"lr": 3e-3, "warmup_steps": 1}
    assert run_training(config_from_dict(config)) == 0
    history = losses(run_dir)
    first, last = sum(list(history.values())[:5]) / 5, sum(list(history.values())[-5:]) / 5
    assert last < first, history
    assert {"nll", "kl"} <= set(read_metrics(run_dir)[-1])
    loaded = load_inference_model(run_dir)
    assert loaded.step == 30 and not loaded.is_latent and not loaded.model.training


def test_nonfinite_steps_are_skipped_then_stop_the_run(tiny_dataset, tmp_path, monkeypatch):
    run_dir = tmp_path / "nan"
    monkeypatch.setenv(FAULT_NAN_STEPS, "3")
    config = tiny_diffusion_config(tiny_dataset, run_dir)
    assert run_training(config_from_dict(config)) == 0
    metrics = read_metrics(run_dir)
    assert [m["nonfinite_steps"] for m in metrics] == [0, 0, 0, 1, 1, 1]  # the 4th step (index 3) skipped
    weights = torch.load(latest_checkpoint(run_dir) / "model.pt", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in weights.values())

    run_dir = tmp_path / "nan-stop"
    monkeypatch.setenv(FAULT_NAN_STEPS, "3,4,5")
    config = tiny_diffusion_config(tiny_dataset, run_dir, train={"max_nonfinite_steps": 3, "checkpoint_every": 3})
    assert run_training(config_from_dict(config)) == EXIT_NONFINITE
    assert latest_checkpoint(run_dir).name == "step_00000003"  # nothing written after the bad steps


def test_user_errors_are_one_line(tiny_dataset, tmp_path):
    good = tiny_diffusion_config(tiny_dataset, tmp_path / "run")
    cases = [
        ({**good, "data": {"path": str(tmp_path / "nowhere")}}, [], "no such data set folder"),
        (good, ["train.batch_size=3", "train.grad_accum=2"], "'train.batch_size' is 3"),
        (good, ["unet.in_channels=3"], "'unet.in_channels' is 3"),
        (good, ["engine.zero_stage=2"], "needs engine.name=deepspeed"),
    ]
    for config, overrides, needle in cases:
        proc = hpc_seaice("train", str(write_config(tmp_path / "c.yaml", config)), *overrides, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr

    # A checkpoint of another model in the run folder: one line naming the checkpoint.
    run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, tmp_path / "run", train={"max_steps": 3})))
    path = write_config(tmp_path / "c.yaml", good)
    proc = hpc_seaice("train", str(path), "unet.base_channels=8", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "does not match the configured model" in lines[0]
    # ... and the run folder still describes the run that is there: sampling it works.
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["unet"]["base_channels"] != 8
    assert load_inference_model(tmp_path / "run", "step_00000003").step == 3
    for step, needle in (("soon", "expected 'latest', a step number"), ("7", "available: step_00000003")):
        proc = hpc_seaice(
            "sample", "--run", str(tmp_path / "run"), "--num", "1", "--out", "x.nc", "--checkpoint", step, check=False
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr


def test_lr_schedule_and_weight_decay_groups():
    cfg = config_from_dict({"optim": {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 4}})
    values = [lr_multiplier(s, cfg.optim, 14) for s in range(15)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert values[4] == pytest.approx(1.0) and values[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[3:], values[4:]))
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.GroupNorm(1, 3), torch.nn.Linear(3, 3))
    net.register_parameter("layer_scale", torch.nn.Parameter(torch.ones(3, 1, 1)))
    decay, no_decay = decay_groups(net, 0.01)
    assert {tuple(p.shape) for p in decay["params"]} == {(3, 2, 3, 3), (3, 3)}
    assert len(no_decay["params"]) == 5 and no_decay["weight_decay"] == 0.0


def test_extending_a_finished_run_follows_the_longer_schedule(tiny_dataset, tmp_path):
    """Raising train.max_steps on resume: the next steps use the new schedule's rates."""
    straight = tmp_path / "straight"
    assert run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, straight))) == 0
    extended = tmp_path / "extended"
    config = tiny_diffusion_config(tiny_dataset, extended)
    config["train"]["max_steps"] = 3
    assert run_training(config_from_dict(config)) == 0
    config["train"]["max_steps"] = 6
    assert run_training(config_from_dict(config)) == 0
    lrs = {m["step"]: m["lr"] for m in read_metrics(straight)}
    assert {m["step"]: m["lr"] for m in read_metrics(extended) if m["step"] > 3} == {s: lrs[s] for s in (4, 5, 6)}
    assert {s: v for s, v in losses(extended).items() if s > 3} == {s: losses(straight)[s] for s in (4, 5, 6)}


def test_pruning_keeps_latest_and_drops_abandoned_checkpoints(tmp_path):
    """After a resume from an older `latest`, later folders are leftovers: never prune the new one."""
    from hpc_seaice.runtime.checkpoint import _prune, step_name

    root = tmp_path / "checkpoints"
    for step in (1, 2, 3, 4, 5, 9):
        (root / step_name(step)).mkdir(parents=True)
    (root / f".tmp-{step_name(7)}").mkdir()
    _prune(root, root / step_name(5), keep=2)
    assert sorted(p.name for p in root.iterdir()) == [step_name(4), step_name(5)]


def test_validation_loss_is_part_of_its_step_record(tiny_dataset, tmp_path):
    """metrics.jsonl: one record per logged step, each with loss/lr/samples_per_s (docs/training.md, "Logging")."""
    run_dir = tmp_path / "val"
    train = {"max_steps": 6, "log_every": 3, "val_every": 2, "val_batches": 1, "image_every": 0}
    assert run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, run_dir, train=train))) == 0
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [2, 3, 4, 6]
    assert all({"loss", "lr", "samples_per_s"} <= r.keys() for r in records)
    assert [r["step"] for r in records if "val_loss" in r] == [2, 4, 6]


def test_unconvertible_deepspeed_checkpoint_is_one_line(tmp_path):
    from hpc_seaice.errors import UserError
    from hpc_seaice.runtime.checkpoint import universal_checkpoint

    folder = tmp_path / "checkpoints" / "step_00000003"
    folder.mkdir(parents=True)
    (folder / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="could not convert it to a universal checkpoint"):
        universal_checkpoint(folder, torch.device("cpu"))
    assert (folder / "universal.log").stat().st_size > 0 and not (folder / "universal").exists()
