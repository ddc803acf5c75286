"""Attaches the variogram score (:mod:`.spatial`) to every scored ensemble of an evaluation.

One coarse grid (blocks and pairs) per evaluation, built from the reference mask, so every model
and the floor are scored on the same pairs; the variables are normalised by the data set's
training std (``static.h5``), as :mod:`.spatial` defines the score. Grids too small for two
blocks get no variogram score (a warning), rather than a score that means nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from hpc_seaice.evaluation.context import ScoringContext
from hpc_seaice.evaluation.generated import GeneratedModel
from hpc_seaice.evaluation.spatial import VariogramScore, coarse_grid


def attach_variogram(sources: Sequence[GeneratedModel], ctx: ScoringContext, std: np.ndarray) -> None:
    """Give every source a :class:`.spatial.VariogramScore` (filled as the reference states stream)."""
    try:
        grid = coarse_grid(ctx.mask)
    except ValueError as exc:
        print(f"evaluate: warning: no variogram score ({exc})", file=sys.stderr, flush=True)
        return
    scale = [float(s) if np.isfinite(s) and s > 0 else 1.0 for s in np.asarray(std, dtype=np.float64)]
    for source in sources:
        source.variogram = VariogramScore(source.ocean_members, grid, scale)
