"""Edges of the fault handling found by trying to break it: lock records, scratch paths, encode.

Each was a traceback, silently deleted a user's files or silently used the wrong data before;
each is now a take-over, a working command, or one line with exit code 2.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import pytest
from helpers import tiny_autoencoder_config

from hpc_seaice.cli import main
from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.runtime.runlock import LOCK_NAME, RunLock
from hpc_seaice.train.trainer import run_training

OLD = 60.0  # seconds: older than the grace a lock file being written gets


@pytest.mark.parametrize(
    "record",
    [
        {"host": "HOST", "pid": "abc"},  # int('abc'): ValueError
        {"host": "other-host", "pid": 5, "time": "yesterday"},  # float('yesterday') in the message
        {"host": "HOST", "pid": 2**40},  # os.kill: OverflowError
        {"host": "HOST", "pid": 1.5},  # int(1.5) == 1, always alive: refused for ever
        {"host": "HOST", "pid": None},
        [1, 2],
    ],
)
def test_a_damaged_lock_record_is_taken_over_like_a_torn_one(tmp_path, record):
    text = json.dumps(record).replace("HOST", socket.gethostname())
    path = tmp_path / LOCK_NAME
    path.write_text(text)
    os.utime(path, (time.time() - OLD, time.time() - OLD))
    lock = RunLock(tmp_path)
    lock.acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


def _sample(capsys, out, *extra: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["sample", "--run", str(out.parent / "no-run"), "--num", "1", "--out", str(out), *extra])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("option", "value", "low"), [("--num", "0", 1), ("--steps", "0", 1), ("--batch-size", "0", 1), ("--seed", "-1", 0)]
)
def test_sample_refuses_a_bad_sampling_argument_in_one_line(tmp_path, capsys, option, value, low):
    """Checked before the run is opened (here it does not exist): one line naming the option and value."""
    code, lines = _sample(capsys, tmp_path / "s.nc", option, value)
    assert code == 2 and lines == [f"hpc-seaice sample: error: {option} must be an integer >= {low}, got {value}"], (
        lines
    )


def test_a_run_whose_data_set_was_moved_says_where_to_point_it(tiny_dataset, tmp_path, capsys):
    """sample, encode and evaluate --reconstruct read the run's data.path: a moved set said only
    'missing manifest' of a path the user may not know the run remembers."""
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    vae = tmp_path / "vae"
    assert run_training(config_from_dict(tiny_autoencoder_config(data, vae, train={"max_steps": 3}))) == 0
    moved = tmp_path / "moved"
    data.rename(moved)
    needle = f"the data set it was trained on, {data}, is gone (moved?); set data.path in {vae / 'config.yaml'}"
    for argv in (
        ["sample", "--run", str(vae), "--num", "1", "--out", str(tmp_path / "s.nc")],
        ["encode", "--autoencoder", str(vae), "--data", str(moved), "--out", str(tmp_path / "z")],
    ):
        capsys.readouterr()
        code = main(argv)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]
        assert code == 2 and len(err) == 1 and needle in err[0], err
    config = (vae / "config.yaml").read_text()
    (vae / "config.yaml").write_text(config.replace(str(data), str(moved)))  # what the message says
    assert main(["encode", "--autoencoder", str(vae), "--data", str(moved), "--out", str(tmp_path / "z")]) == 0
    assert read_manifest(tmp_path / "z").source["autoencoder_step"] == 3


def test_commands_without_checkpoint_option_say_how_to_use_a_checkpoint_that_works(tiny_dataset, tmp_path, capsys):
    """evaluate --reconstruct and encode have no --checkpoint: the hint used to name it anyway."""
    vae = tmp_path / "vae"
    assert run_training(config_from_dict(tiny_autoencoder_config(tiny_dataset, vae))) == 0
    root = vae / "checkpoints"
    (root / "step_00000006" / "model.pt").write_bytes(b"damaged")
    commands = {
        "evaluate": ["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "ev"), "--reconstruct", str(vae)],
        "encode": ["encode", "--autoencoder", str(vae), "--data", str(tiny_dataset), "--out", str(tmp_path / "z")],
    }
    for argv in commands.values():
        capsys.readouterr()
        code = main(argv)
        lines = capsys.readouterr().err.splitlines()
        err = [line for line in lines if line.strip() and "%|" not in line and ": warning: " not in line]
        assert code == 2 and len(err) == 1, err
        assert "model.pt: changed or damaged" in err[0] and "--checkpoint" not in err[0], err[0]
        assert f"step_00000003 can be used: write step_00000003 into {root / 'latest'}" in err[0], err[0]
    (root / "latest").write_text("step_00000003\n")  # what the message says
    assert main([*commands["encode"], "--overwrite"]) == 0
    assert read_manifest(tmp_path / "z").source["autoencoder_step"] == 3
