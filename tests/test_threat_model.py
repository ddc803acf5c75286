"""The threat model of docs/threat_model.md, enforced: signed checkpoint metadata, no run folder
that others can write, DeepSpeed's universal form hashed like the rest, HDF5 files that hold
their own data. Each case is what a tester did against the previous version.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import h5py
import numpy as np
import pytest
import torch
from helpers import hpc_seaice, tiny_diffusion_config, write_config

from hpc_seaice.cli import main
from hpc_seaice.data.format.shard_reader import OpenShard
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import sha256_file
from hpc_seaice.runtime.checkpoint import latest_checkpoint
from hpc_seaice.runtime.integrity import add_files, verify_files, write_meta
from hpc_seaice.runtime.private import check_private
from hpc_seaice.runtime.signing import ACCEPT_ENV, KEY_ENV, check_signature, load_key, sign


@pytest.fixture
def own_key(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "key"
    monkeypatch.setenv(KEY_ENV, str(path))
    monkeypatch.delenv(ACCEPT_ENV, raising=False)
    return path


def test_the_key_is_made_once_private_and_a_readable_one_is_refused(own_key):
    key = load_key()
    assert stat.S_IMODE(own_key.stat().st_mode) == 0o600 and len(key) == 32
    assert load_key() == key  # not made again
    own_key.chmod(0o644)
    with pytest.raises(UserError, match="chmod 600"):
        load_key()


def test_a_rewritten_table_an_unsigned_one_and_a_foreign_one_are_told_apart(own_key, tmp_path, monkeypatch):
    meta = sign({"step": 3, "files": {"model.pt": "a" * 64}})
    where = tmp_path / "meta.json"
    assert check_signature(meta, where) is True
    tampered = {**meta, "files": {"model.pt": "b" * 64}}
    with pytest.raises(UserError, match="signature mismatch"):
        check_signature(tampered, where)
    unsigned = {k: v for k, v in meta.items() if k != "signature"}
    with pytest.raises(UserError, match=f"unsigned checkpoint metadata.*{ACCEPT_ENV}=1"):
        check_signature(unsigned, where)
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "other-user" / "key"))  # a run copied from elsewhere
    with pytest.raises(UserError, match=f"signed with another key.*{KEY_ENV}=FILE.*{ACCEPT_ENV}=1"):
        check_signature(meta, where)
    monkeypatch.setenv(ACCEPT_ENV, "1")
    assert check_signature(meta, where) is False and check_signature(unsigned, where) is False
    monkeypatch.setenv(KEY_ENV, str(own_key))
    with pytest.raises(UserError, match="signature mismatch"):  # own key, changed: never accepted
        check_signature(tampered, where)


def test_universal_files_join_the_signed_table_and_are_checked(own_key, tmp_path):
    folder = tmp_path / "step_00000003"
    (folder / "universal" / "zero").mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"weights")
    write_meta(folder, {"step": 3, "files": {"model.pt": sha256_file(folder / "model.pt")}})
    state = folder / "universal" / "zero" / "fp32.pt"
    state.write_bytes(b"partition")
    with pytest.raises(UserError, match="universal/zero/fp32.pt: not part of the checkpoint.*remove"):
        verify_files(folder)  # made but not (yet) listed: e.g. a crash before the table was updated
    add_files(folder, "universal")
    assert "universal/zero/fp32.pt" in verify_files(folder)["files"]
    state.write_bytes(b"replaced")
    with pytest.raises(UserError, match="fp32.pt: changed or damaged"):
        verify_files(folder)


@pytest.mark.distributed
def test_a_replaced_deepspeed_partition_with_its_hash_rewritten_runs_no_code(tiny_dataset, tmp_path):
    """The reported attack: a pickle payload as DeepSpeed's optimizer partition, its sha256
    rewritten in meta.json. The resume refuses it before DeepSpeed unpickles anything (the
    payload is live: unpickled as DeepSpeed loads its files, it runs)."""
    run_dir = tmp_path / "ds"
    config = tiny_diffusion_config(
        tiny_dataset, run_dir, engine={"name": "deepspeed", "zero_stage": 1}, train={"max_steps": 2}
    )
    path = write_config(tmp_path / "c.yaml", config)
    hpc_seaice("train", str(path))
    folder = latest_checkpoint(run_dir)
    partition = next(folder.glob("*optim_states.pt"))
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').write('ran')",)

    torch.save({"optimizer_state_dict": Payload()}, partition)
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"][partition.name] = sha256_file(partition)
    (folder / "meta.json").write_text(json.dumps(meta))
    proc = hpc_seaice("train", str(path), "train.max_steps=4", check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "signature mismatch" in err[0], proc.stderr[-2000:]
    assert not marker.exists()
    torch.load(partition, weights_only=False)  # how DeepSpeed reads its partitions
    assert marker.exists()


def test_a_run_folder_others_can_write_is_refused_with_the_override_named(tiny_dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o777)
    config = write_config(tmp_path / "c.yaml", tiny_diffusion_config(tiny_dataset, run_dir))
    capsys.readouterr()
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "writable by every user" in err[0] and "run.allow_shared_dir=true" in err[0], err
    assert not (run_dir / "checkpoints").exists()  # refused before anything was written
    check_private(run_dir, allow_shared=True)  # the override


def test_a_file_deep_in_the_run_folder_writable_by_a_group_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    partition = run_dir / "checkpoints" / "step_00000003" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    partition.parent.mkdir(parents=True)
    partition.write_bytes(b"x")
    for path in (run_dir, partition.parent.parent, partition.parent, partition):
        path.chmod(0o755 if path.is_dir() else 0o644)
    check_private(run_dir)  # nobody else can write it
    if os.geteuid() == 0:
        os.chown(partition, 0, 1)  # group 1 (daemon/bin): not root's private group
    else:
        pytest.skip("changing a file's group to one with other members needs root here")
    partition.chmod(0o664)
    with pytest.raises(UserError, match=f"{partition.name}: writable by group"):
        check_private(run_dir)
    partition.chmod(0o644)
    check_private(run_dir)


def _linked_copy(tiny_dataset, tmp_path, how: str):
    """A copy of the data set whose first shard reads its 'fields' from another file through
    ``how``, with the manifest's sha256 rewritten to match (what passed `data verify` before)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    manifest = json.loads((data / "manifest.json").read_text())
    shard = data / manifest["shards"][0]["file"]
    other = data / "elsewhere.h5"
    with h5py.File(shard, "r") as f:
        fields, time = f["fields"][()], f["time"][()]
        attrs = dict(f.attrs)
        time_attrs = dict(f["time"].attrs)
        field_attrs = dict(f["fields"].attrs)
    with h5py.File(other, "w") as g:
        g["fields"] = np.zeros_like(fields)
    shard.unlink()
    with h5py.File(shard, "w") as f:
        f.attrs.update(attrs)
        f["time"] = time
        f["time"].attrs.update(time_attrs)
        if how == "external link":
            f["fields"] = h5py.ExternalLink(other.name, "fields")
        else:
            layout = h5py.VirtualLayout(shape=fields.shape, dtype="f4")
            layout[:] = h5py.VirtualSource(other.name, "fields", shape=fields.shape)
            f.create_virtual_dataset("fields", layout)
            f["fields"].attrs.update(field_attrs)
    manifest["shards"][0]["sha256"] = sha256_file(shard)
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data, shard


@pytest.mark.parametrize(("how", "needle"), [("external link", "is an external link"), ("virtual", "virtual dataset")])
def test_a_shard_that_reads_another_file_is_refused_by_verify_and_by_the_reader(
    tiny_dataset, tmp_path, capsys, how, needle
):
    data, shard = _linked_copy(tiny_dataset, tmp_path, how)
    capsys.readouterr()
    assert main(["data", "verify", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and str(shard) in err[0], err
    with pytest.raises(UserError, match=needle):
        OpenShard(str(shard))
