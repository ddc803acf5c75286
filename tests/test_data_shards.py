"""Shard writer/reader round trip, manifests, and every bad input through the CLI."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
import torch

from hpc_seaice.cli import main
from hpc_seaice.data.format.manifest import Layout, Manifest, merge_manifests, read_manifest, write_manifest
from hpc_seaice.data.format.shards import ShardWriter
from hpc_seaice.data.format.static import read_static, write_static
from hpc_seaice.data.format.verify import verify_dataset
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import sha256_file

H, W = 6, 5


def _times(n: int, start: str = "2016-12-30", hours: int = 6) -> np.ndarray:
    return np.datetime64(start, "s") + np.arange(n) * np.timedelta64(hours, "h")


def _writer(out, latent: bool = False, shard_prefix: str = "shard") -> ShardWriter:
    """Four samples per shard of the five sea-ice variables, or of five unbounded latent channels."""
    layout = Layout.latent(5, (H, W)) if latent else Layout.fields((H, W))
    return ShardWriter(out, layout, 4, shard_prefix=shard_prefix)


def rehash(root) -> None:
    """Make the manifest hashes match the (tampered) shards, so only the tampering is tested."""
    m = read_manifest(root)
    for s in m.shards:
        s.sha256 = sha256_file(root / s.file)
    write_manifest(root, m)


def rewrite_fields(path, fields: np.ndarray, variables: list[str] | None) -> None:
    """Replace a shard's ``fields`` dataset (keeping its times)."""
    with h5py.File(path, "r+", locking=False) as f:
        del f["fields"]
        d = f.create_dataset("fields", data=fields.astype(np.float32), chunks=(1, *fields.shape[1:]))
        if variables is not None:
            d.attrs["variables"] = variables


def run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    rc = main(list(argv))
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    return rc, err


def test_round_trip_and_manifest(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (11, 5, H, W)).astype(np.float32)
    t = _times(11)
    with _writer(tmp_path) as w:
        w.write(x[:3], t[:3])
        w.write(x[3:], t[3:])  # crosses shard boundaries inside one call
    shards = w.shards
    assert [s.count for s in shards] == [4, 4, 3]
    assert [s.file for s in shards] == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name], "no temporary file left behind"
    write_static(tmp_path, np.ones((H, W)), np.zeros((H, W)), np.zeros((H, W)), np.zeros(5), np.ones(5))
    m = w.build_manifest(splits={"train": ["2016-01-01", "2016-12-31"], "test": ["2017-01-01", "2017-12-31"]})
    write_manifest(tmp_path, m)
    assert json.loads((tmp_path / "manifest.json").read_text())["lower"][3] == "-inf"
    back = read_manifest(tmp_path)
    assert back == m and back.time_start == "2016-12-30T00:00:00" and back.time_end == "2017-01-01T12:00:00"
    ds = ShardedDataset(tmp_path, split=None, normalize=False)
    assert len(ds) == 11 and np.array_equal(ds.times, t)
    assert all(np.array_equal(ds.raw(i), x[i]) for i in range(11))
    # splits by time: the bare end date includes its whole last day (18:00)
    assert len(ShardedDataset(tmp_path, split="train", normalize=False)) == 8
    assert len(ShardedDataset(tmp_path, split="test", normalize=False)) == 3
    with h5py.File(tmp_path / "shard-00000.h5", locking=False) as f:
        assert f["fields"].chunks == (1, 5, H, W) and f["fields"].compression is None
        assert f["time"].dtype == np.int64 and "seconds since 1970" in f["time"].attrs["units"]
    verify_dataset(tmp_path)


def _latent_set(root, x: np.ndarray, logvar: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    with _writer(root, latent=True) as w:
        w.write(x, _times(len(x)), logvar=logvar)
    write_manifest(root, w.build_manifest(splits={"train": ["2016-12-30", "2017-01-01"]}))
    write_static(root, np.ones((H, W)), np.zeros((H, W)), np.zeros((H, W)), mean, std)


def test_posterior_items_are_the_standardised_mean_and_the_stored_logvar(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(9, 5, H, W)).astype(np.float32)
    logvar = rng.uniform(-6, 1, size=x.shape).astype(np.float32)
    mean, std = rng.normal(size=5), rng.uniform(0.5, 2.0, size=5)
    _latent_set(tmp_path / "ok", x, logvar, mean, std)
    idx = [8, 0, 1, 5, 1]  # across shards, neighbours and a repeat
    expected = np.concatenate([(x[idx] - mean[:, None, None]) / std[:, None, None], logvar[idx]], axis=1)
    for in_memory in (False, True):
        ds = ShardedDataset(tmp_path / "ok", split=None, in_memory=in_memory, posterior=True)
        assert ds.sample_channels == 10 and ds.num_channels == 5
        batch = ds.read_batch(idx, np.empty((len(idx), 10, H, W), np.float32))
        np.testing.assert_allclose(batch, expected, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(ds[5].numpy(), expected[3], rtol=2e-6, atol=1e-6)
    with pytest.raises(ValueError, match="latent data set, normalised"):
        ShardedDataset(tmp_path / "ok", split=None, normalize=False, posterior=True)
    logvar[6, 2, 1, 3] = np.nan
    _latent_set(tmp_path / "nan", x, logvar, mean, std)
    ds = ShardedDataset(tmp_path / "nan", split=None, posterior=True)
    with pytest.raises(UserError, match=r"shard-00001.h5: sample 2 .*posterior log-variance"):
        ds.read_batch([0, 6], np.empty((2, 10, H, W), np.float32))
    # data verify (and the training start-up check, which reads the first samples of a shard)
    # checks the log-variance beside the means: latent training reads both.
    verify_dataset(tmp_path / "ok")
    with pytest.raises(UserError, match=r"shard-00001.h5: NaN or infinite values in the posterior log-variance"):
        verify_dataset(tmp_path / "nan")
    # A finite log-variance whose sigma is beyond float32 (exp(250)): named as such, quietly (one line).
    logvar[6, 2, 1, 3] = 500.0
    _latent_set(tmp_path / "huge", x, logvar, mean, std)
    ds = ShardedDataset(tmp_path / "huge", split=None, posterior=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would be a second line on stderr
        with pytest.raises(UserError, match=r"shard-00001.h5: sample 2 .*posterior log-variance \(logvar\)"):
            ds.read_batch([0, 6], np.empty((2, 10, H, W), np.float32))


def test_rank_writers_merge_and_latent_logvar(tmp_path):
    t = _times(10)
    x = np.random.default_rng(1).normal(size=(10, 5, H, W)).astype(np.float32)
    parts = []
    for rank, rows in enumerate((range(0, 6), range(6, 10))):  # partition() of 10 over 2 ranks
        w = _writer(tmp_path, latent=True, shard_prefix=f"shard-r{rank:03d}")
        w.write(x[rows.start : rows.stop], t[rows.start : rows.stop], logvar=-x[rows.start : rows.stop])
        w.close()
        parts.append(
            w.build_manifest(splits={"all": ["2016-01-01", "2017-12-31"]}, source={"autoencoder_run": "runs/vae"})
        )
    merged = merge_manifests(parts[::-1])
    assert merged.splits == {"all": ["2016-01-01", "2017-12-31"]}
    assert merged.num_samples == 10 and merged.shards[0].file == "shard-r000-00000.h5"
    assert merged.source == {"autoencoder_run": "runs/vae"}
    write_manifest(tmp_path, merged)
    write_static(tmp_path, np.ones((H, W)), np.zeros((H, W)), np.zeros((H, W)), np.zeros(5), np.ones(5))
    ds = ShardedDataset(tmp_path, split=None)
    assert torch.equal(ds[7], torch.from_numpy(x[7]))
    assert np.array_equal(ds.logvar(7), -x[7])
    # A shuffled batch across both ranks' shards, with neighbours and a repeat, read in one call.
    batch = [9, 2, 3, 7, 0, 3, -1]
    assert np.array_equal(ds.read_logvars(batch), -x[batch])
    with pytest.raises(IndexError, match="out of range"):
        ds.read_logvars([3, 10])
    verify_dataset(tmp_path)
    with pytest.raises(ValueError, match="duplicate"):
        merge_manifests([parts[0], parts[0]])


def test_writer_rejects_programming_errors(tmp_path):
    w = _writer(tmp_path)
    with pytest.raises(ValueError, match="shape"):
        w.write(np.zeros((2, 5, H + 1, W)), _times(2))
    with pytest.raises(ValueError, match="increasing"):
        w.write(np.zeros((2, 5, H, W)), _times(2)[::-1])


def test_normalised_items_are_masked_zscores(tiny_dataset):
    ds = ShardedDataset(tiny_dataset, split="train")
    raw = ShardedDataset(tiny_dataset, split="train", normalize=False)
    mean = torch.tensor(ds.static.mean, dtype=torch.float64)[:, None, None]
    std = torch.tensor(ds.static.std, dtype=torch.float64)[:, None, None]
    for i in (0, 7, len(ds) - 1):
        x = ds[i]
        expected = (torch.from_numpy(raw.raw(i)).double() - mean) / std * ds.mask
        assert x.dtype == torch.float32 and x.shape == (5, *ds.grid)
        assert torch.allclose(x.double(), expected, atol=1e-5)
        assert (x[:, ds.mask == 0] == 0).all()
        assert torch.allclose(ds.denormalize(x).double(), torch.from_numpy(raw.raw(i)).double(), atol=1e-5)


def test_splits_are_disjoint_time_ordered_and_cover_all(tiny_dataset):
    sets = {s: ShardedDataset(tiny_dataset, split=s) for s in ("train", "validation", "test")}
    assert [len(d) for d in sets.values()] == [41, 5, 5]
    for d in sets.values():
        assert np.all(np.diff(d.times.astype(np.int64)) > 0)
    assert sets["train"].times[-1] < np.datetime64("2017-01-01") <= sets["validation"].times[0]
    assert sets["validation"].times[-1] < np.datetime64("2018-01-01") <= sets["test"].times[0]
    assert len(ShardedDataset(tiny_dataset, split=None)) == 51


# ------------------------------------------------------------------------------------------
# bad inputs: one line on stderr naming the file and the problem, exit code 2


def _assert_one_line(rc, err, *needles):
    assert rc == 2, err
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]


def test_missing_variable_in_shard(tiny_dataset_copy, capsys):
    shard = tiny_dataset_copy / "shard-00002.h5"
    with h5py.File(shard, locking=False) as f:
        x = f["fields"][()]
    rewrite_fields(shard, x[:, [0, 1, 3, 4]], ["sit", "sic", "siu", "siv"])
    rehash(tiny_dataset_copy)
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "shard-00002.h5", "missing variable(s) damage")
    with pytest.raises(UserError, match="missing variable"):
        ShardedDataset(tiny_dataset_copy)


def test_extra_variable_in_shard(tiny_dataset_copy, capsys):
    shard = tiny_dataset_copy / "shard-00001.h5"
    with h5py.File(shard, locking=False) as f:
        x = f["fields"][()]
    rewrite_fields(shard, np.concatenate([x, x[:, :1]], axis=1), ["sit", "sic", "damage", "siu", "siv", "snow"])
    rehash(tiny_dataset_copy)
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "shard-00001.h5", "extra variable(s) snow")
    rc, err = run_cli(capsys, "data", "stats", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "shard-00001.h5", "extra variable")


def test_manifest_with_missing_variable(tiny_dataset_copy, capsys):
    path = tiny_dataset_copy / "manifest.json"
    d = json.loads(path.read_text())
    for key in ("variables", "units", "lower", "upper"):
        d[key] = d[key][:4]
    path.write_text(json.dumps(d))
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "manifest.json", "missing variable(s) siv")


def test_wrong_shape(tiny_dataset_copy, capsys):
    shard = tiny_dataset_copy / "shard-00000.h5"
    with h5py.File(shard, locking=False) as f:
        x = f["fields"][()]
    rewrite_fields(shard, np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 0))), ["sit", "sic", "damage", "siu", "siv"])
    rehash(tiny_dataset_copy)
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "shard-00000.h5", "shape (8, 5, 33, 32)", "(8, 5, 32, 32)")
    with pytest.raises(UserError, match="shard-00000.h5.*shape"):
        ShardedDataset(tiny_dataset_copy)


def test_nan_in_ocean_cells(tiny_dataset_copy, capsys):
    ocean = read_static(tiny_dataset_copy).mask > 0.5
    iy, ix = np.argwhere(ocean)[0]
    with h5py.File(tiny_dataset_copy / "shard-00001.h5", "r+", locking=False) as f:
        f["fields"][3, 1, iy, ix] = np.nan
    rehash(tiny_dataset_copy)
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "shard-00001.h5", "NaN in ocean cells of sic")
    rc, err = run_cli(capsys, "data", "stats", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "shard-00001.h5", "ocean cells of sic")
    ds = ShardedDataset(tiny_dataset_copy, split=None)
    with pytest.raises(UserError, match="shard-00001.h5: sample 3 .* ocean cells of sic"):
        ds[8 + 3]
    with pytest.raises(UserError, match="shard-00001.h5: sample 3 .* ocean cells of sic"):
        ds.__getitems__([0, 8 + 3, 1])  # the batched path names the same sample


def test_truncated_shard(tiny_dataset_copy, capsys):
    shard = tiny_dataset_copy / "shard-00003.h5"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    for cmd in ("verify", "stats"):
        rc, err = run_cli(capsys, "data", cmd, str(tiny_dataset_copy))
        _assert_one_line(rc, err, "shard-00003.h5", "truncated or corrupt")
    with pytest.raises(UserError, match="shard-00003.h5.*truncated or corrupt"):
        ShardedDataset(tiny_dataset_copy)


def test_hash_mismatch(tiny_dataset_copy, capsys):
    with h5py.File(tiny_dataset_copy / "shard-00004.h5", "r+", locking=False) as f:
        f["fields"][0, 3] = f["fields"][0, 3] * 0.5  # valid values, different bytes
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "shard-00004.h5", "sha256 mismatch")


def test_out_of_bounds_value(tiny_dataset_copy, capsys):
    ocean = read_static(tiny_dataset_copy).mask > 0.5
    iy, ix = np.argwhere(ocean)[-1]
    with h5py.File(tiny_dataset_copy / "shard-00000.h5", "r+", locking=False) as f:
        f["fields"][2, 2, iy, ix] = 1.5
    rehash(tiny_dataset_copy)
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "shard-00000.h5", "damage value 1.5", "outside bounds")


def test_empty_split(tiny_dataset_copy, capsys):
    m = read_manifest(tiny_dataset_copy)
    m.splits["validation"] = ["2030-01-01", "2030-12-31"]
    write_manifest(tiny_dataset_copy, m)
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "manifest.json", "split validation (2030-01-01..2030-12-31) has no samples")
    with pytest.raises(UserError, match="split validation .* has no samples"):
        ShardedDataset(tiny_dataset_copy, split="validation")
    m.splits["train"] = ["2030-01-01", "2030-12-31"]
    write_manifest(tiny_dataset_copy, m)
    rc, err = run_cli(capsys, "data", "stats", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "manifest.json", "split train", "no samples")


def test_missing_manifest_static_and_shard(tiny_dataset_copy, capsys):
    (tiny_dataset_copy / "shard-00005.h5").unlink()
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "shard-00005.h5", "missing")
    (tiny_dataset_copy / "static.h5").unlink()
    rc, err = run_cli(capsys, "data", "stats", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "static.h5", "missing static file")
    (tiny_dataset_copy / "manifest.json").unlink()
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "manifest.json", "missing manifest")
    with pytest.raises(UserError, match="missing manifest"):
        ShardedDataset(tiny_dataset_copy)


def test_missing_stats_then_data_stats_restores_them(tiny_dataset_copy, capsys):
    static = read_static(tiny_dataset_copy)
    write_static(tiny_dataset_copy, static.mask, static.lat, static.lon)
    with pytest.raises(UserError, match="static.h5: missing normalisation statistics; run hpc-seaice data stats"):
        ShardedDataset(tiny_dataset_copy)
    assert len(ShardedDataset(tiny_dataset_copy, normalize=False)) == 41  # physical values need no stats
    rc, err = run_cli(capsys, "data", "verify", str(tiny_dataset_copy))
    _assert_one_line(rc, err, "static.h5", "hpc-seaice data stats")
    assert main(["data", "stats", str(tiny_dataset_copy)]) == 0
    assert "mean" in capsys.readouterr().out
    assert np.allclose(read_static(tiny_dataset_copy).mean, static.mean)
    assert main(["data", "verify", str(tiny_dataset_copy)]) == 0
    assert "OK" in capsys.readouterr().out


def test_bad_manifest_json(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="manifest.json: not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(UserError, match="missing key"):
        read_manifest(tmp_path)
    assert isinstance(Manifest, type)
