"""Normalisation statistics: against numpy, mergeable partial results, storage in static.h5."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_seaice.data.blocks import evenly_spaced
from hpc_seaice.data.format.static import read_static, write_static
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.data.stats.normalisation import RunningStats, add_pc1_std, compute_stats
from hpc_seaice.data.stats.pca import DEFAULT_MAX_STATES, leading_pc_std_of


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

    from hpc_seaice.data.format.manifest import Layout, write_manifest
    from hpc_seaice.data.format.shards import ShardWriter
    from hpc_seaice.data.format.static import write_static

    layout = Layout("latent", ["a", "b"], ["1", "1"], [-math.inf] * 2, [math.inf] * 2, (3, 3))
    w = ShardWriter(tmp_path, layout, 8)
    x = np.zeros((4, 2, 3, 3), np.float32)
    x[:, 1] = np.arange(4)[:, None, None]
    w.write(x, np.datetime64("2010-01-01", "s") + np.arange(4) * np.timedelta64(1, "D"), logvar=x)
    w.close()
    write_manifest(tmp_path, w.build_manifest(splits={"train": ["2010-01-01", "2010-12-31"]}))
    write_static(tmp_path, np.ones((3, 3)), np.zeros((3, 3)), np.zeros((3, 3)))
    mean, std = compute_stats(tmp_path)
    assert std[0] == 1.0 and np.isclose(std[1], np.arange(4).std())
    assert "a is constant" in capsys.readouterr().err


def _normalised_train_matrix(path, mean, std):
    """[n, D] normalised ocean values of every train state (read independently of the pca module)."""
    ds = ShardedDataset(path, split="train", normalize=False)
    ocean = ds.static.mask > 0.5
    x = np.stack([ds.raw(i)[:, ocean] for i in range(len(ds))]).astype(np.float64)
    return ((x - mean[None, :, None]) / std[None, :, None]).reshape(len(ds), -1)


def test_pc1_std_is_stored_and_matches_an_svd(tiny_dataset_copy):
    mean, std = compute_stats(tiny_dataset_copy)
    stored = read_static(tiny_dataset_copy)
    x = _normalised_train_matrix(tiny_dataset_copy, mean, std)
    assert len(x) <= DEFAULT_MAX_STATES  # all train states are used: no subsample to reproduce
    top = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)[0] / np.sqrt(len(x) - 1)
    assert stored.pc1_std == pytest.approx(top, rel=1e-5)
    assert stored.attrs["pc1_std"] == pytest.approx(top, rel=1e-5)


def test_leading_pc_std_of_a_known_covariance():
    """States = a_i * 300 * v + small isotropic noise, v a unit vector: the top PC std is 300."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=200_000)
    v /= np.linalg.norm(v)
    a = rng.normal(size=40)
    a = (a - a.mean()) / a.std(ddof=1)  # exactly unit sample variance
    states = (300.0 * a[:, None] * v[None, :]).astype(np.float32) + 1e-3 * rng.normal(size=(40, v.size)).astype(
        np.float32
    )
    assert leading_pc_std_of(states) == pytest.approx(300.0, rel=1e-4)
    # the Gram route equals the covariance route on a small case
    small = rng.normal(size=(7, 5)) * [5.0, 1.0, 0.5, 0.2, 0.1]
    cov_top = np.sqrt(np.linalg.eigvalsh(np.cov(small, rowvar=False))[-1])
    assert leading_pc_std_of(small) == pytest.approx(cov_top, rel=1e-10)
    assert list(evenly_spaced(365, 4)) == [0, 121, 243, 364] and list(evenly_spaced(3, 64)) == [0, 1, 2]


def test_stats_rewrite_keeps_grid_geometry_and_add_pc1_std(tiny_dataset_copy):
    static = read_static(tiny_dataset_copy)
    shape = static.mask.shape
    geometry = {"cell_area": np.full(shape, 144e6), "dx": np.full(shape, 12e3), "dy": np.full(shape, 11e3)}
    write_static(tiny_dataset_copy, static.mask, static.lat, static.lon, static.mean, static.std, **geometry)
    assert read_static(tiny_dataset_copy).pc1_std is None
    pc1 = add_pc1_std(tiny_dataset_copy)
    again = read_static(tiny_dataset_copy)
    assert again.pc1_std == pytest.approx(pc1) and pc1 > 0
    compute_stats(tiny_dataset_copy)
    again = read_static(tiny_dataset_copy)
    for key, value in geometry.items():
        np.testing.assert_array_equal(getattr(again, key), value)
    assert again.pc1_std == pytest.approx(pc1, rel=1e-6)  # same statistics, same value
