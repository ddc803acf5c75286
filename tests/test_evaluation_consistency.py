"""Joint physical consistency shares on constructed fields and on the synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.evaluation import consistency as CO


def _fields(sit, sic, siu, siv) -> np.ndarray:
    """[5, 1, n] fields (sit, sic, damage, siu, siv) of one row of cells."""
    rows = [sit, sic, np.zeros(len(sit)), siu, siv]
    return np.asarray(rows, dtype=np.float32)[:, None, :]


def test_constructed_cells_each_fail_exactly_their_check():
    # cell:   0 ok ice  1 ok water  2 thick/no conc  3 conc/no thick  4 moving water  5 borderline
    sit = [1.0, 0.0, 0.5, 0.0, 0.0, 0.009]
    sic = [0.9, 0.0, 0.0, 0.6, 0.0, 0.0005]
    siu = [0.1, 0.0, 0.0, 0.0, 0.03, 0.0]
    siv = [0.0, 0.0, 0.0, 0.0, 0.03, 0.009]
    mask = np.ones((1, 6))
    mask_with_land = np.ones((1, 7))
    mask_with_land[0, 6] = 0
    shares = CO.field_inconsistency_shares(_fields(sit, sic, siu, siv), mask)
    assert shares["thickness_without_concentration"] == pytest.approx(1 / 6)
    assert shares["concentration_without_thickness"] == pytest.approx(1 / 6)
    assert shares["velocity_without_ice"] == pytest.approx(1 / 6)
    # A land cell holding garbage does not count, in the numerator or the denominator.
    garbage = _fields(sit + [3.0], sic + [0.0], siu + [5.0], siv + [5.0])
    assert CO.field_inconsistency_shares(garbage, mask_with_land) == pytest.approx(shares)


def test_tolerances_absorb_round_off_but_not_values():
    n = 1000
    eps = np.full(n, 5e-4)
    # Round-off around zero in every variable: consistent.
    shares = CO.inconsistency_shares(eps, eps, eps, eps)
    assert all(v == 0 for v in shares.values())
    # Just past each "present" threshold: flagged.
    zero = np.zeros(n)
    assert CO.inconsistency_shares(np.full(n, 0.011), zero, zero, zero)["thickness_without_concentration"] == 1.0
    assert CO.inconsistency_shares(zero, np.full(n, 0.11), zero, zero)["concentration_without_thickness"] == 1.0
    assert CO.inconsistency_shares(zero, zero, np.full(n, 0.011), zero)["velocity_without_ice"] == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        CO.inconsistency_shares(zero, zero[:-1], zero, zero)


def test_synthetic_states_are_consistent_and_mismatched_variables_are_not(tiny_dataset_64):
    ds = ShardedDataset(tiny_dataset_64, None, normalize=False)
    states = np.stack([ds.raw(i) for i in range(len(ds))])  # 51 states 73 days apart
    mask = ds.static.mask
    truth = CO.field_inconsistency_shares(states, mask)
    # The generator stores no drift where sic <= 1e-3; thickness follows concentration.
    assert all(np.all(v <= 1e-3) for v in truth.values()), truth
    # Right marginals, wrong joint: each variable from another state (another season).
    mixed = states.copy()
    mixed[:, 1] = np.roll(states[:, 1], 1, axis=0)  # sic
    mixed[:, 3:] = np.roll(states[:, 3:], 2, axis=0)  # velocities
    broken = CO.field_inconsistency_shares(mixed, mask)
    for check in CO.CHECKS:
        assert broken[check].shape == (len(states),)
        assert broken[check].mean() > 0.005, (check, broken[check].mean())
    scores = CO.consistency_scores(broken, n_boot=200)
    for check in CO.CHECKS:
        assert scores[check]["low"] <= broken[check].mean() <= scores[check]["high"]
        assert scores[check]["low"] > 0.002
    assert scores["tolerances"]["present_speed_m_s"] == CO.PRESENT_SPEED
