"""Pan-Arctic aggregates against hand-computed cases, and their distribution scores."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_seaice.evaluation import aggregates as AG
from hpc_seaice.evaluation import metrics as M


def test_uniform_cover_of_known_area():
    mask = np.ones((4, 5))
    mask[0, :] = 0  # a land row: 15 ocean cells
    area = np.full((4, 5), 1.0e4)  # km^2 per cell
    sic = np.ones((4, 5), np.float32)
    sit = np.full((4, 5), 2.0, np.float32)  # m, grid-cell mean
    agg = AG.state_aggregates(sit, sic, mask, area)
    assert agg["extent"] == pytest.approx(0.15)  # 15 x 1e4 km^2 = 0.15 million km^2
    assert agg["area"] == pytest.approx(0.15)
    assert agg["volume"] == pytest.approx(0.30)  # 15e4 km^2 x 0.002 km = 300 km^3
    assert agg["miz_area"] == pytest.approx(0.0)
    # The same volume from floe thickness 2 m at concentration 1.
    assert AG.state_aggregates(sit, sic, mask, area, sit_is_cell_mean=False)["volume"] == pytest.approx(0.30)


def test_half_covered_grid_with_unequal_cells():
    mask = np.ones((2, 4))
    area = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]) * 1e5  # km^2
    sic = np.zeros((2, 4), np.float32)
    sic[:, :2] = 0.5  # left half: 50 % cover (MIZ); right half open water
    floe = 1.5  # m
    sit = sic * floe
    agg = AG.state_aggregates(sit, sic, mask, area)
    left = (1 + 2 + 5 + 6) * 1e5
    assert agg["extent"] == pytest.approx(left / 1e6)
    assert agg["area"] == pytest.approx(0.5 * left / 1e6)
    assert agg["miz_area"] == pytest.approx(left / 1e6)
    # 0.75 m x 1.4e6 km^2 = 1.05e3 km^3 = 1.05 thousand km^3
    assert agg["volume"] == pytest.approx(0.5 * floe * left / 1e3 / 1e3)
    assert AG.state_aggregates(np.full_like(sic, floe), sic, mask, area, sit_is_cell_mean=False)["volume"] == (
        pytest.approx(agg["volume"])
    )


def test_thresholds_are_inclusive_in_stored_precision():
    mask = np.ones((1, 4))
    area = np.ones((1, 4)) * 1e6
    sic = np.array([[0.1499, 0.15, 0.8, 0.8001]], np.float32)
    agg = AG.state_aggregates(np.zeros_like(sic), sic.astype(np.float64), mask, area)
    assert agg["extent"] == pytest.approx(3.0)
    assert agg["miz_area"] == pytest.approx(2.0)
    assert agg["miz_area"] == pytest.approx(M.miz_area(sic, mask, area) / 1e6)


def test_ocean_layout_equals_field_layout_and_batches():
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(6, 7)) > 0.3
    area = rng.uniform(100.0, 300.0, size=(6, 7))
    sic = rng.uniform(size=(3, 6, 7)).astype(np.float32)
    sit = sic * rng.gamma(2.0, size=(3, 6, 7)).astype(np.float32)
    fields = AG.state_aggregates(sit, sic, mask, area)
    ocean = AG.ocean_aggregates(sit[:, mask], sic[:, mask], area[mask])
    for name in AG.AGGREGATES:
        assert fields[name].shape == (3,)
        np.testing.assert_allclose(fields[name], ocean[name])
    np.testing.assert_allclose(fields["miz_area"], M.miz_area(sic, mask, area) / 1e6)
    with pytest.raises(ValueError, match="do not match"):
        AG.ocean_aggregates(sit[:, mask], sic[:, mask], area[mask][:-1])


def test_wasserstein_and_crps_on_known_cases():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert AG.wasserstein1(y + 0.5, y) == pytest.approx(0.5)
    assert AG.wasserstein1(y, y) == 0.0
    # One member at c against states y: CRPS = mean |c - y|.
    assert AG.aggregate_crps(np.array([2.0]), y) == pytest.approx(np.mean(np.abs(2.0 - y)))
    x = np.array([0.5, 2.5, 3.0])
    direct = np.mean([M.crps_ensemble(x, v) for v in y])
    assert AG.aggregate_crps(x, y) == pytest.approx(direct)
    assert AG.aggregate_crps(x, y, fair=True) == pytest.approx(np.mean([M.crps_ensemble(x, v, fair=True) for v in y]))
    with pytest.raises(ValueError, match="finite"):
        AG.wasserstein1(np.array([np.nan]), y)


def test_scores_separate_a_steady_model_from_a_good_one():
    # The reference varies from state to state; a per-cell shuffle's aggregates do not.
    rng = np.random.default_rng(1)
    ref = {name: rng.normal(10.0, 2.0, size=200) for name in AG.AGGREGATES}
    good = {name: rng.normal(10.0, 2.0, size=100) for name in AG.AGGREGATES}
    steady = {name: rng.normal(10.0, 0.1, size=100) for name in AG.AGGREGATES}
    good_scores = AG.aggregate_scores(good, ref, n_boot=300)
    steady_scores = AG.aggregate_scores(steady, ref, n_boot=300)
    for name in AG.AGGREGATES:
        g, s = good_scores[name], steady_scores[name]
        assert g["units"] == AG.UNITS[name]
        assert s["wasserstein"]["low"] > g["wasserstein"]["high"]
        assert g["crps"]["estimate"] < s["crps"]["estimate"]
        assert g["mean_difference"]["low"] < 0 < g["mean_difference"]["high"]
        for key in ("wasserstein", "crps", "mean_difference"):
            assert g[key]["low"] <= g[key]["estimate"] <= g[key]["high"]
