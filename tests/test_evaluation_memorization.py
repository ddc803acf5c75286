"""Memorisation: the projection's distance, the nearest-neighbour search, and the copy flag."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.evaluation import memorization as MM


def _rms(a: np.ndarray, b: np.ndarray, mean, std, ocean) -> float:
    """Full-resolution RMS of normalised fields over ocean cells and variables (the definition)."""
    diff = (a - b) / np.asarray(std)[:, None, None]
    return float(np.sqrt((diff[:, ocean] ** 2).mean()))


def test_projection_is_a_lower_bound_exact_for_block_constant_differences():
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(10, 13)) > 0.25  # 10 x 13: edge blocks are partial
    mean, std = np.array([1.0, -2.0]), np.array([2.0, 0.5])
    proj = MM.Projection(mask, mean, std, block=4)
    a, b = rng.normal(size=(2, 2, 10, 13))
    pa, pb = proj.fields(np.stack([a, b]))
    assert np.linalg.norm(pa - pb) <= _rms(a, b, mean, std, mask) + 1e-7
    # A difference constant in every block: the projected distance is the full RMS.
    blocks = rng.normal(size=(2, 3, 4))
    step = np.repeat(np.repeat(blocks, 4, axis=1), 4, axis=2)[:, :10, :13]
    pc = proj.fields((a + step)[None])[0]
    assert np.linalg.norm(pc - pa) == pytest.approx(_rms(a + step, a, mean, std, mask), rel=1e-5)
    # The ocean layout, the field layout and already-normalised reads give the same projection.
    np.testing.assert_allclose(proj.ocean_values(a[None][:, :, mask]), pa[None], rtol=1e-5, atol=1e-6)
    normalised = np.where(mask, (a - mean[:, None, None]) / std[:, None, None], 0.0)
    np.testing.assert_allclose(proj.normalised_fields(normalised[None]), pa[None], rtol=1e-5, atol=1e-6)
    assert MM.block_size((512, 512)) == 8 and MM.block_size((64, 64)) == 1 and proj.dim == pa.size


def test_nearest_search_equals_brute_force_across_blocks():
    rng = np.random.default_rng(1)
    refs = rng.normal(size=(300, 40)).astype(np.float32)
    queries = np.concatenate([refs[[7, 123, 299]], rng.normal(size=(20, 40)).astype(np.float32)])
    found = MM.nearest(queries, refs, block=64)
    dist = np.sqrt(((queries[:, None, :].astype(np.float64) - refs[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(found.index, dist.argmin(axis=1))
    np.testing.assert_allclose(found.distance, dist.min(axis=1), rtol=1e-6, atol=1e-9)
    assert found.distance[:3].tolist() == [0.0, 0.0, 0.0] and found.num_references == 300


def _split(root, name):
    ds = ShardedDataset(root, name, normalize=False)
    return np.stack([ds.raw(i) for i in range(len(ds))]), ds


def _blur(states: np.ndarray, ocean: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each field over the ocean (land-aware: weights renormalised)."""
    weight = ndimage.gaussian_filter(ocean.astype(np.float64), sigma)
    out = [
        [ndimage.gaussian_filter(np.where(ocean, f, 0.0), sigma) / np.maximum(weight, 1e-9) for f in s] for s in states
    ]
    return np.where(ocean, np.asarray(out), 0.0)


def test_streamed_search_over_a_split_matches_the_definition(tiny_dataset_64):
    train, ds = _split(tiny_dataset_64, "train")
    test, _ = _split(tiny_dataset_64, "test")
    ocean = ds.static.mask > 0.5
    proj = MM.Projection(ocean, ds.static.mean, ds.static.std)  # block 1 on 64 x 64: the full RMS
    found = MM.nearest_in_split(proj.fields(test), tiny_dataset_64, proj, block_bytes=5 * 64 * 64 * 4 * 6)
    full = np.array([[_rms(t, r, ds.static.mean, ds.static.std, ocean) for r in train] for t in test])
    np.testing.assert_array_equal(found.index, full.argmin(axis=1))
    np.testing.assert_allclose(found.distance, full.min(axis=1), rtol=1e-5)
    sets = MM.nearest_for_sets({"a": proj.fields(test[:2]), "b": proj.fields(test[2:])}, tiny_dataset_64, proj)
    np.testing.assert_allclose(np.concatenate([sets["a"].distance, sets["b"].distance]), found.distance)


def test_copies_and_blurred_copies_are_flagged_held_out_states_are_not(tiny_dataset_64):
    train, ds = _split(tiny_dataset_64, "train")
    test, _ = _split(tiny_dataset_64, "test")
    validation, _ = _split(tiny_dataset_64, "validation")
    ocean = ds.static.mask > 0.5
    proj = MM.Projection(ocean, ds.static.mean, ds.static.std)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(train), 16, replace=False)
    models = {
        "copies": train[pick],
        "blur 1": _blur(train[pick], ocean, 1.0),
        "blur 2": _blur(train[pick], ocean, 2.0),
        "held out": validation,
        "noise": train.mean(0) + train.std(0) * rng.normal(size=(16, *train.shape[1:])),
    }
    sets = {name: proj.fields(x) for name, x in models.items()} | {"test": proj.fields(test)}
    nn = MM.nearest_for_sets(sets, tiny_dataset_64, proj)
    verdicts = {name: MM.memorization_verdict(nn[name].distance, nn["test"].distance) for name in models}
    for name in ("copies", "blur 1", "blur 2"):
        assert verdicts[name]["copies_training"], (name, verdicts[name])
        assert verdicts[name]["share_below"] == 1.0
    np.testing.assert_array_equal(nn["copies"].index, pick)
    for name in ("held out", "noise"):
        assert not verdicts[name]["copies_training"], (name, verdicts[name])
    v = verdicts["blur 2"]
    assert v["threshold"] == pytest.approx(nn["test"].distance.min())
    assert v["sample_nn_quantiles"]["q100"] < v["threshold"] <= v["test_nn_quantiles"]["q00"]


def test_an_exchangeable_model_is_rarely_flagged_even_with_few_test_states():
    rng = np.random.default_rng(2)
    flagged = share_only = 0
    runs = 500
    for _ in range(runs):
        draws = rng.gamma(3.0, size=16 + 5)  # 16 samples and 5 test states from one distribution
        verdict = MM.memorization_verdict(draws[:16], draws[16:])
        flagged += verdict["copies_training"]
        share_only += verdict["share_below"] > MM.SHARE_LIMIT
    # The p-value keeps it near or under 5 % (3.5 % over 2000 runs); 500 runs: std 1 %.
    assert flagged / runs < 0.06
    assert share_only / runs > 0.5  # the share alone flags it (78 % of 2000 runs with T = 5)
    with pytest.raises(ValueError, match="need samples"):
        MM.memorization_verdict(np.array([]), np.array([1.0]))
