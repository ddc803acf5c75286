"""Ice-cover calibration summaries and plateau shares against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.evaluation.calibration import cover_calibration, partial_cover_error, sea_ice_cover_probability
from hpc_seaice.evaluation.plateaus import out_of_bounds_applies, plateau_counts, plateau_shares, shares_from_counts


def test_sea_ice_cover_probability_and_calibration():
    sic = np.zeros((4, 1, 3))
    sic[:, 0, 0] = [0.2, 0.1, 0.9, 0.15]  # 3 of 4 ice-covered (0.15 counts)
    sic[:2, 0, 1] = 0.5  # 2 of 4
    np.testing.assert_allclose(sea_ice_cover_probability(sic), [[0.75, 0.5, 0.0]])

    p_test = np.array([[0.0, 0.02, 0.51, 0.99, 1.0, 0.5]])
    p_gen = np.array([[0.1, 0.2, 0.4, 0.8, 0.9, 0.3]])
    mask = np.array([[1, 1, 1, 1, 1, 0]])
    cal = cover_calibration(p_test, p_gen, mask, bin_width=0.05)
    assert cal.counts.sum() == 5 and cal.counts.size == 20
    assert cal.counts[0] == 2 and cal.counts[10] == 1 and cal.counts[19] == 2
    assert cal.mean_generated[0] == pytest.approx(0.15)
    assert cal.mean_test[0] == pytest.approx(0.01)
    assert cal.mean_generated[10] == pytest.approx(0.4)  # the land cell (0.5 -> 0.3) is excluded
    assert cal.mean_generated[19] == pytest.approx(0.85)
    assert np.isnan(cal.mean_generated[5])
    gaps = [0.14, 0.11, 0.995 - 0.85]  # bins 0, 10, 19
    assert cal.error == pytest.approx((2 * gaps[0] + gaps[1] + 2 * gaps[2]) / 5)
    assert cal.unweighted_error == pytest.approx(sum(gaps) / 3)
    # cells with 0 < p_test < 1: 0.02, 0.51, 0.99 (0.0 and 1.0 are out, the land cell too)
    assert cal.partial_error == pytest.approx((0.18 + 0.11 + 0.19) / 3)
    d = cal.to_dict()
    assert d["mean_generated"][5] is None
    assert d["unweighted_error"] == pytest.approx(cal.unweighted_error)
    assert d["partial_error"] == pytest.approx(cal.partial_error)
    np.testing.assert_allclose(cal.bin_centers[:2], [0.025, 0.075])


def test_ice_cover_threshold_is_applied_at_the_stored_precision():
    """float32(0.7) is 0.69999999 in float64: a stored value at the threshold is covered either way."""
    stored = np.array([[[0.7, np.nextafter(np.float32(0.7), np.float32(0))]]], dtype=np.float32)
    for sic in (stored, stored.astype(np.float64)):
        np.testing.assert_array_equal(sea_ice_cover_probability(sic, threshold=0.7), [[1.0, 0.0]])


def test_unweighted_calibration_is_not_dominated_by_certain_cells():
    """Many perfectly forecast always-ice / never-ice cells hide a bad ice edge in the weighted error only."""
    rng = np.random.default_rng(0)
    edge = rng.uniform(0.05, 0.95, 50)
    p_test = np.concatenate([np.zeros(5000), np.ones(5000), edge])[None]
    p_gen = np.concatenate([np.zeros(5000), np.ones(5000), np.clip(edge + 0.3, 0, 1)])[None]
    mask = np.ones_like(p_test)
    cal = cover_calibration(p_test, p_gen, mask)
    expect_partial = np.abs(np.clip(edge + 0.3, 0, 1) - edge).mean()
    assert cal.partial_error == pytest.approx(expect_partial)
    assert cal.error < 0.01 < 0.1 < cal.unweighted_error
    assert np.isnan(partial_cover_error(np.ones((2, 2)), np.zeros((2, 2)), np.ones((2, 2))))


def test_plateau_shares_count_exact_values_on_ocean_only():
    mask = np.ones((2, 3))
    mask[1, 2] = 0
    fields = np.full((2, len(VARIABLES), 2, 3), 0.5)
    fields[0, 0] = [[0.0, 0.0, 0.1], [0.0, 1e-9, 0.0]]  # sit: 3 ocean zeros in state 0 (land zero not counted)
    fields[1, 1] = [[0.0, 1.0, 1.0], [1.0, 0.999, 1.0]]  # sic: one 0 and three 1s on ocean in state 1
    fields[:, 2] = 1.0  # damage = 1 everywhere
    shares = plateau_shares(fields, mask)
    n = 2 * 5  # states x ocean cells
    assert shares == pytest.approx({"sit=0": 3 / n, "sic=0": 1 / n, "sic=1": 3 / n, "damage=1": 1.0})
    # streaming: summed per-state counts give the same shares
    counts = sum(plateau_counts(f, mask) for f in fields)
    assert shares_from_counts(counts, n) == pytest.approx(shares)


def test_out_of_bounds_does_not_apply_to_censored_decoders():
    assert not out_of_bounds_applies({"decoder": "censored"})
    assert out_of_bounds_applies({"decoder": "gaussian"})
    assert out_of_bounds_applies({"decoder": "none"})  # data space
    assert out_of_bounds_applies({})  # older files: reported as before
