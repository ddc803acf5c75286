"""Shares of ocean cells exactly at a physical plateau, and when "out of bounds" means nothing.

Sea ice has point masses at its bounds: open water (``sit = 0``, ``sic = 0``), the closed pack
(``sic = 1``) and fully damaged ice (``damage = 1``) cover large parts of the ocean. A model
that reproduces the distribution must put the same share of cells exactly there; a smooth
decoder followed by clipping reaches a plateau only by overshooting it, a censored decoder by
design. These shares are reported for every model next to the test set's.

For a censored decoder a location beyond a bound is how a point mass is encoded, so the
"fraction out of bounds before clipping" counts every plateau cell (about 40 % of ``sic``) and
says nothing about errors: :func:`out_of_bounds_applies` says when to report it as n/a.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import VARIABLES

# (key in metrics.json, variable, plateau value)
PLATEAUS: tuple[tuple[str, str, float], ...] = (
    ("sit=0", "sit", 0.0),
    ("sic=0", "sic", 0.0),
    ("sic=1", "sic", 1.0),
    ("damage=1", "damage", 1.0),
)


def plateau_counts(fields: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Number of ocean values exactly at each of :data:`PLATEAUS` in ``fields`` ``[..., C, H, W]``."""
    x = np.asarray(fields)
    ocean = np.asarray(mask) > 0.5
    return np.array(
        [int(np.count_nonzero((x[..., VARIABLES.index(var), :, :] == value) & ocean)) for _, var, value in PLATEAUS],
        dtype=np.int64,
    )


def plateau_shares(fields: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Share of ocean values exactly at each plateau, over all leading dimensions of ``fields``."""
    x = np.asarray(fields)
    total = int((np.asarray(mask) > 0.5).sum()) * int(np.prod(x.shape[:-3], dtype=np.int64))
    return shares_from_counts(plateau_counts(x, mask), total)


def shares_from_counts(counts: np.ndarray, total: int) -> dict[str, float]:
    """``{plateau key: count / total}`` (a streaming sum of :func:`plateau_counts` over ``total`` values)."""
    return {key: float(c) / max(total, 1) for (key, _, _), c in zip(PLATEAUS, counts)}


def out_of_bounds_applies(attrs: dict[str, Any]) -> bool:
    """False for samples of a censored decoder (beyond a bound = on a plateau, by design)."""
    return str(attrs.get("decoder", "")).lower() != "censored"
