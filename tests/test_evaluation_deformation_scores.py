"""Deformation statistics accumulated chunk by chunk equal the instrument applied to all states at once."""

import numpy as np
import pytest
import verdict_models as V

from hpc_seaice.evaluation.deformation_scores import CHUNK, DeformationAccumulator, source_deformation
from hpc_seaice.evaluation.deformation_stats import deformation_scaling


def test_chunked_moments_equal_the_pooled_scaling():
    states = V.states(np.random.default_rng(0), CHUNK + 5)  # two chunks
    states[:, 1] = np.where(V.land_mask() > 0, 1.0, 0.0)  # all pack: boxes at every side
    mask = V.land_mask()
    acc = DeformationAccumulator((V.GRID, V.GRID), V.SPACING_M, V.SPACING_M, V.SPACING_M / 1e3)
    ocean = mask > 0.5
    got = source_deformation([states[:, c][:, ocean] for c in range(5)], mask, acc)
    scales = got["scaling"]["scales_cells"]
    assert scales[0] == 1 and scales[-1] >= 8
    want = deformation_scaling(
        states[:, 3], states[:, 4], np.broadcast_to(ocean, states[:, 1].shape), V.SPACING_M, V.SPACING_M, scales=scales
    )
    assert np.allclose(got["scaling"]["moments_per_day_q"], want.moments, rtol=1e-10)
    assert got["scaling"]["beta"] == pytest.approx(want.beta.tolist(), abs=1e-10)
    # Gaussian-like drift has no decade of tail above its 90th percentile: the PDF says so instead of raising
    assert "runs past the largest value" in got["pdf"]["error"]


def test_no_pack_is_reported_not_raised():
    states = V.states(np.random.default_rng(1), 3)
    states[:, 1] = 0.5  # no cell reaches the pack threshold
    acc = DeformationAccumulator((V.GRID, V.GRID), V.SPACING_M, V.SPACING_M, 25.0)
    acc.add(states, V.land_mask())
    result = acc.result()
    assert "error" in result["scaling"] and "error" in result["pdf"]
