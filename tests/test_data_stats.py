"""Normalisation statistics: against numpy, mergeable partial results, storage in static.h5."""

from __future__ import annotations

import numpy as np

from hpc_seaice.data.dataset import ShardedDataset
from hpc_seaice.data.static import read_static
from hpc_seaice.data.stats import RunningStats, compute_stats


def _train_ocean_values(path):
    ds = ShardedDataset(path, split="train", normalize=False)
    ocean = ds.static.mask > 0.5
    x = np.stack([ds.raw(i) for i in range(len(ds))]).astype(np.float64)
    return x[:, :, ocean].transpose(1, 0, 2).reshape(5, -1)


def test_stats_match_numpy_over_ocean_cells_of_train(tiny_dataset_copy):
    values = _train_ocean_values(tiny_dataset_copy)
    stored = read_static(tiny_dataset_copy)  # written by the generator in the same pass
    mean, std = compute_stats(tiny_dataset_copy)
    assert np.allclose(mean, values.mean(axis=1), rtol=1e-10, atol=1e-12)
    assert np.allclose(std, values.std(axis=1), rtol=1e-10, atol=1e-12)
    assert np.allclose(stored.mean, mean, rtol=1e-12) and np.allclose(stored.std, std, rtol=1e-12)
    again = read_static(tiny_dataset_copy)
    assert np.array_equal(again.mean, mean) and again.attrs["stats_split"] == "train"
    assert np.allclose(again.summary["min"], values.min(axis=1))
    assert np.allclose(again.summary["max"], values.max(axis=1))
    assert np.isclose(again.summary["frac_upper"][1], (values[1] >= 1).mean())
    assert np.isclose(again.summary["frac_lower"][0], (values[0] <= 0).mean())
    assert int(again.summary["count"]) == values.shape[1]
    # mask and coordinates survive a stats rewrite
    assert np.array_equal(again.mask, stored.mask) and np.array_equal(again.lat, stored.lat)


def test_running_stats_merge_is_exact_in_any_grouping():
    rng = np.random.default_rng(0)
    blocks = [rng.normal(loc=k, scale=1 + k, size=(k + 1, 3, 4, 5)) for k in range(5)]
    ocean = rng.uniform(size=(4, 5)) > 0.3
    lower, upper = [0.0, -np.inf, -np.inf], [1.0, np.inf, np.inf]
    serial = RunningStats(lower, upper)
    for b in blocks:
        serial.update(b, ocean)
    left, right = RunningStats(lower, upper), RunningStats(lower, upper)
    for b in blocks[:2]:
        left.update(b, ocean)
    for b in blocks[2:]:
        right.update(b, ocean)
    merged = left.merge(right)
    allv = np.concatenate([b[:, :, ocean].transpose(1, 0, 2).reshape(3, -1) for b in blocks], axis=1)
    for s in (serial, merged):
        assert s.count == allv.shape[1]
        assert np.allclose(s.mean, allv.mean(axis=1), rtol=1e-12)
        assert np.allclose(s.std, allv.std(axis=1), rtol=1e-12)
        assert np.array_equal(s.min, allv.min(axis=1))
    assert np.array_equal(serial.at_lower, merged.at_lower)


def test_constant_variable_gets_unit_std(tmp_path, capsys):
    import math

    from hpc_seaice.data.manifest import write_manifest
    from hpc_seaice.data.shards import ShardWriter
    from hpc_seaice.data.static import write_static

    w = ShardWriter(
        tmp_path,
        kind="latent",
        variables=["a", "b"],
        units=["1", "1"],
        lower=[-math.inf] * 2,
        upper=[math.inf] * 2,
        grid=[3, 3],
        shard_size=8,
    )
    x = np.zeros((4, 2, 3, 3), np.float32)
    x[:, 1] = np.arange(4)[:, None, None]
    w.write(x, np.datetime64("2010-01-01", "s") + np.arange(4) * np.timedelta64(1, "D"), logvar=x)
    w.close()
    write_manifest(tmp_path, w.build_manifest(splits={"train": ["2010-01-01", "2010-12-31"]}))
    write_static(tmp_path, np.ones((3, 3)), np.zeros((3, 3)), np.zeros((3, 3)))
    mean, std = compute_stats(tmp_path)
    assert std[0] == 1.0 and np.isclose(std[1], np.arange(4).std())
    assert "a is constant" in capsys.readouterr().err
