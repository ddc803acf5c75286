"""The output protocol (hpc_seaice.outputs) for every command that writes: kills, races, full disks.

Each case was a failure before the protocol: ``--overwrite`` deleted the old set first (a kill left
neither), deleted a user's ``backup-00001.h5``, wiped its own input; two writers both "succeeded";
a full disk was hundreds of h5py lines and a segmentation fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, child_env, tiny_autoencoder_config, tiny_diffusion_config

from hpc_seaice import outputs
from hpc_seaice.cli import main
from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.samples_file import samples_dataset, write_samples
from hpc_seaice.data.format.static import read_static
from hpc_seaice.data.format.verify import verify_dataset
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.data.synth.generate import generate
from hpc_seaice.errors import UserError
from hpc_seaice.train.trainer import run_training

SYNTH = ["--grid", "32", "--freq", "73D", "--shard-size", "8"]


def _messages(stderr: str) -> list[str]:
    """What a command said on stderr, without its progress bars (an error can follow a bar on its line)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    return re.findall(r"hpc-seaice [a-z ]+: [^\r\n]*", stderr)


def _cli(capsys, *argv: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(list(argv))
    return code, _messages(capsys.readouterr().err)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@contextlib.contextmanager
def _tmpfs(where: Path, size: str, *options: str):
    """A small tmpfs at ``where`` (root only; skipped where mounting is not permitted)."""
    where.mkdir(parents=True, exist_ok=True)
    spec = ",".join([f"size={size}", *options])
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", spec, "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def plenty_of_space(monkeypatch):
    """The free-space check passes: the disk fills during the write itself."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda _: usage(1 << 50, 0, 1 << 50))


Runs = namedtuple("Runs", "data vae diffusion")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    """A 32 x 32 set, a VAE and a data-space diffusion run trained 2 steps each."""
    root = tmp_path_factory.mktemp("outputs")
    generate(root / "data", grid=32, freq="73D", shard_size=8, progress=False)
    vae, diffusion = root / "vae", root / "diffusion"
    small = {"max_steps": 2, "checkpoint_every": 2}
    assert run_training(config_from_dict(tiny_autoencoder_config(root / "data", vae, train=small))) == 0
    assert run_training(config_from_dict(tiny_diffusion_config(root / "data", diffusion, train=small))) == 0
    return Runs(root / "data", vae, diffusion)


# --------------------------------------------------------------------------------------------
# --overwrite, inputs, checks


def test_overwrite_replaces_only_the_files_the_old_manifest_names(tmp_path, capsys):
    out = tmp_path / "set"
    assert _cli(capsys, "data", "synth", "--out", str(out), *SYNTH)[0] == 0
    old_shards = {s.file for s in read_manifest(out).shards}
    (out / "backup-00001.h5").write_bytes(b"a user's file named like a shard")  # deleted before
    (out / "NOTES.txt").write_text("mine")
    code, err = _cli(capsys, "data", "synth", "--out", str(out), *SYNTH[:-1], "16", "--overwrite")
    assert code == 0, err
    new_shards = {s.file for s in read_manifest(out).shards}
    assert len(new_shards) < len(old_shards)  # shards of 16: the old shards beyond them are gone
    on_disk = {p.name for p in out.iterdir()}
    assert on_disk == new_shards | {"manifest.json", "static.h5", "backup-00001.h5", "NOTES.txt"}
    assert (out / "backup-00001.h5").read_bytes() == b"a user's file named like a shard"
    verify_dataset(out, progress=False)
    assert _leftovers(tmp_path) == []

    code, err = _cli(capsys, "data", "synth", "--out", str(out), *SYNTH)
    assert code == 2 and err == [
        f"hpc-seaice data synth: error: --out {out}: already holds a data set; pass --overwrite to replace it"
    ]


def test_an_output_equal_to_inside_or_around_an_input_is_refused(runs, tmp_path, capsys):
    """encode --data X --out X --overwrite wiped its own input."""
    data = runs.data
    before = _snapshot(data)
    for out, relation in ((data, "is"), (data / "latents", "is inside"), (data.parent, "contains")):
        code, err = _cli(
            capsys, "encode", "--autoencoder", str(runs.vae), "--data", str(data), "--out", str(out), "--overwrite"
        )
        assert code == 2 and len(err) == 1 and f"--out {out}: {relation} the input --data {data}" in err[0], err
    assert _snapshot(data) == before
    code, err = _cli(
        capsys, "sample", "--run", str(runs.diffusion), "--num", "1", "--out", str(runs.diffusion / "s.nc")
    )
    assert code == 2 and len(err) == 1 and "is inside the input --run" in err[0], err


def test_a_link_loop_or_a_read_only_place_is_one_line_before_any_work(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    code, err = _cli(capsys, "data", "synth", "--out", str(loop), *SYNTH)
    assert code == 2 and len(err) == 1 and "a link to nothing (or a link loop)" in err[0], err
    with _tmpfs(tmp_path / "ro", "1m", "ro"):
        code, err = _cli(capsys, "data", "synth", "--out", str(tmp_path / "ro" / "set"), *SYNTH)
    assert code == 2 and len(err) == 1 and f"{tmp_path / 'ro'} is not writable" in err[0], err


# --------------------------------------------------------------------------------------------
# two writers


def test_a_second_writer_is_refused_naming_the_first(tmp_path, capsys):
    """A live holder of the output's lock (here: this test's parent process) refuses a second writer."""
    out = tmp_path / "set"
    lock = tmp_path / ".set.lock"
    holder = {"host": socket.gethostname(), "pid": os.getppid(), "time": time.time()}
    lock.write_text(json.dumps(holder))
    code, err = _cli(capsys, "data", "synth", "--out", str(out), *SYNTH)
    assert code == 2 and len(err) == 1, err
    assert f"--out {out}: another hpc-seaice data synth writes it (host {holder['host']}, pid {os.getppid()}" in err[0]
    assert not out.exists() and _leftovers(tmp_path) == [".set.lock"]
    holder["pid"] = 2**22 + 1  # a process that is gone: its lock is stale and taken over
    lock.write_text(json.dumps(holder))
    assert _cli(capsys, "data", "synth", "--out", str(out), *SYNTH)[0] == 0
    assert _leftovers(tmp_path) == []


def test_two_concurrent_writers_one_refused_and_one_whole_set(tmp_path):
    out = tmp_path / "set"
    command = [sys.executable, "-m", "hpc_seaice", "data", "synth", "--out", str(out), "--grid", "32", "--freq", "20D"]
    first = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (tmp_path / ".set.lock").exists() and time.time() < deadline:
        time.sleep(0.02)
    second = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120)
    first_out, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    lines = _messages(second.stderr)
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"pid {first.pid}" in lines[0] and "another hpc-seaice data synth writes it" in lines[0]
    verify_dataset(out, progress=False)
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# kills


def _kill_when(command: list[str], ready, timeout: float = 90) -> None:
    proc = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, f"finished before the kill: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _staged_shard(parent: Path, name: str):
    return lambda: any(True for p in parent.glob(f".{name}.tmp-*/*") if p.name.endswith(".h5") or ".h5.tmp-" in p.name)


def test_synth_overwrite_killed_mid_write_keeps_the_old_set(tmp_path, capsys):
    out = tmp_path / "set"
    assert _cli(capsys, "data", "synth", "--out", str(out), *SYNTH)[0] == 0
    before = _snapshot(out)
    command = [
        sys.executable,
        "-m",
        "hpc_seaice",
        "data",
        "synth",
        "--out",
        str(out),
        "--grid",
        "64",
        "--freq",
        "2D",
        "--overwrite",
    ]
    _kill_when(command, _staged_shard(tmp_path, "set"))
    assert _snapshot(out) == before  # was: deleted before the new set was written
    verify_dataset(out, progress=False)
    # The next writer takes the dead writer's lock and removes its temporary folder.
    assert _cli(capsys, "data", "synth", "--out", str(out), *SYNTH, "--overwrite")[0] == 0
    assert _leftovers(tmp_path) == []


def test_encode_overwrite_killed_mid_write_keeps_the_old_set(runs, tmp_path, capsys):
    out = tmp_path / "latents"
    base = ["encode", "--autoencoder", str(runs.vae), "--data", str(runs.data), "--out", str(out)]
    assert _cli(capsys, *base)[0] == 0
    before = _snapshot(out)
    _kill_when(
        [sys.executable, "-m", "hpc_seaice", *base, "--overwrite", "--batch-size", "1"],
        _staged_shard(tmp_path, "latents"),
    )
    assert _snapshot(out) == before
    verify_dataset(out, progress=False)
    assert _cli(capsys, *base, "--overwrite")[0] == 0
    assert _leftovers(tmp_path) == []


def test_a_kill_in_the_middle_of_the_swap_is_undone_by_the_next_writer(tmp_path, capsys):
    """Dies (os._exit) after the old set was moved aside and one new file moved in."""
    out = tmp_path / "set"
    assert _cli(capsys, "data", "synth", "--out", str(out), *SYNTH)[0] == 0
    before = _snapshot(out)
    script = (
        "import os\n"
        "from pathlib import Path\n"
        "from hpc_seaice.cli import main\n"
        "real, moved_in = os.replace, [0]\n"
        "def dying(src, dst):\n"
        f"    if Path(dst).parent == Path({str(out)!r}):\n"
        "        moved_in[0] += 1\n"
        "        if moved_in[0] == 2:\n"
        "            os._exit(9)\n"
        "    return real(src, dst)\n"
        "os.replace = dying\n"
        f"main(['data', 'synth', '--out', {str(out)!r}, '--grid', '32', '--freq', '73D', '--shard-size', '16', "
        "'--overwrite'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=child_env(), capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    assert any(p.name.startswith(".set.old-") for p in tmp_path.iterdir())  # the swap was cut
    assert not (out / "manifest.json").exists()
    code, err = _cli(capsys, "data", "synth", "--out", str(out), *SYNTH)  # no --overwrite: the old set is back
    assert code == 2 and "already holds a data set" in err[0], err
    assert _snapshot(out) == before
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# full disks: one line naming the file, exit 2, no traceback, no segfault; the old output kept


def _full_disk_line(err: list[str], command: str) -> None:
    assert len(err) == 1 and err[0].startswith(f"hpc-seaice {command}: error: "), err
    assert "cannot write (No space left on device)" in err[0], err


def test_synth_and_convert_on_a_full_disk(tmp_path, capsys, plenty_of_space):
    import xarray as xr

    from hpc_seaice.data.format.variables import UNITS

    source = tmp_path / "source.nc"
    ds = ShardedDataset(_small_set(tmp_path), split=None, normalize=False)
    fields = np.stack([ds[i].numpy() for i in range(len(ds))])
    names = ["sit", "sic", "damage", "siu", "siv"]
    xr.Dataset(
        {n: (("time", "y", "x"), fields[:, k], {"units": UNITS[n]}) for k, n in enumerate(names)},
        coords={"time": ds.times},
    ).to_netcdf(source, engine="h5netcdf")
    with _tmpfs(tmp_path / "fs", "120k") as fs:
        code, err = _cli(capsys, "data", "synth", "--out", str(fs / "set"), *SYNTH)
        _full_disk_line(err, "data synth")
        assert code == 2 and _leftovers(fs) == [] and not (fs / "set").exists()
        code, err = _cli(capsys, "data", "convert", str(source), "--out", str(fs / "set"), "--shard-size", "8")
        _full_disk_line(err, "data convert")
        assert code == 2 and _leftovers(fs) == [] and not (fs / "set").exists()


def _small_set(tmp_path: Path) -> Path:
    generate(tmp_path / "small", grid=32, freq="73D", shard_size=8, progress=False)
    return tmp_path / "small"


def test_the_free_space_check_counts_the_whole_set_before_any_work(tmp_path, capsys):
    with _tmpfs(tmp_path / "fs", "120k") as fs:
        code, err = _cli(capsys, "data", "synth", "--out", str(fs / "set"), *SYNTH)
    assert code == 2 and len(err) == 1 and "51 samples need about" in err[0] and "free there" in err[0], err


def test_encode_sample_and_evaluate_on_a_full_disk_keep_the_old_output(runs, tmp_path, capsys, plenty_of_space):
    with _tmpfs(tmp_path / "fs", "400k") as fs:
        latents = fs / "latents"
        encode = ["encode", "--autoencoder", str(runs.vae), "--data", str(runs.data), "--out", str(latents)]
        assert _cli(capsys, *encode)[0] == 0
        before = _snapshot(latents)
        filler = fs / "filler"
        free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
        filler.write_bytes(b"\0" * max(free - 8192, 0))
        code, err = _cli(capsys, *encode, "--overwrite")
        _full_disk_line(err, "encode")
        assert code == 2 and _snapshot(latents) == before and _leftovers(fs) == []
        filler.unlink()

        samples = fs / "s.nc"
        static = read_static(runs.data)
        ref = ShardedDataset(runs.data, split="test", normalize=False)
        fields = np.stack([ref[i].numpy() for i in range(len(ref))])
        write_samples(samples, samples_dataset(fields, static.mask, static.lat, static.lon, {"model": "x"}))
        before = samples.read_bytes()
        free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
        filler.write_bytes(b"\0" * max(free - 8192, 0))
        code, err = _cli(
            capsys,
            "sample",
            "--run",
            str(runs.diffusion),
            "--num",
            "2",
            "--steps",
            "2",
            "--out",
            str(samples),
            "--overwrite",
        )
        _full_disk_line(err, "sample")
        assert code == 2 and samples.read_bytes() == before and _leftovers(fs) == []
        code, err = _cli(
            capsys, "evaluate", "--samples", str(samples), "--data", str(runs.data), "--out", str(fs / "eval")
        )
        _full_disk_line(err, "evaluate")
        assert code == 2 and not (fs / "eval").exists() and _leftovers(fs) == []


def test_a_full_disk_is_no_segfault_in_a_real_process(runs, tmp_path):
    """The HDF5 crash happens at interpreter exit, so only a process of its own shows it (was: exit -11)."""
    with _tmpfs(tmp_path / "fs", "60k") as fs:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "hpc_seaice",
                "encode",
                "--autoencoder",
                str(runs.vae),
                "--data",
                str(runs.data),
                "--out",
                str(fs / "l"),
            ],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = _messages(proc.stderr)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert len(lines) == 1 and "cannot write (No space left on device)" in lines[0], lines
        assert _leftovers(fs) == []


def test_guarded_file_records_the_error_and_the_protocol_unit_refuses_reuse(tmp_path):
    """Direct checks of the two building blocks: no file is reused, no link followed."""
    from hpc_seaice.fileio import GuardedFile

    target = tmp_path / "f.h5"
    (tmp_path / "elsewhere").write_text("precious")
    target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        GuardedFile(target)
    assert (tmp_path / "elsewhere").read_text() == "precious"
    output = outputs.Output(tmp_path / "x.nc", "sample", folder=False)
    with pytest.raises(UserError, match="not written by|exists"):
        (tmp_path / "x.nc").write_text("old")
        output.check()
