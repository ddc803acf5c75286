"""What makes two data sets "the same" for a trained model: kind, variables, grid, land mask, statistics.

The path is not part of it, so a data set that was moved or copied still matches. Runs record it
(``runtime.identity``) and latent data sets record the identity of the fields they encode
(``data.format.provenance``); both compare with :func:`identity_difference`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

STATS_RTOL = 1e-9  # statistics are float64 written once; recomputing them gives the same numbers
KEYS = ("kind", "variables", "grid", "ocean_cells", "mask_sha256", "mean", "std")
NAMES = {"mask_sha256": "land mask", "ocean_cells": "ocean cell count", "mean": "normalisation mean"}


def data_identity(manifest: Any, static: Any) -> dict[str, Any]:
    """The identity record of an open data set (manifest + static file)."""
    mask = np.ascontiguousarray(np.asarray(static.mask) > 0.5, dtype=np.uint8)
    stats = {
        key: None if getattr(static, key) is None else [float(v) for v in np.asarray(getattr(static, key)).ravel()]
        for key in ("mean", "std")
    }
    return {
        "kind": manifest.kind,
        "variables": list(manifest.variables),
        "grid": [int(g) for g in manifest.grid],
        "mask_sha256": hashlib.sha256(mask.tobytes() + str(mask.shape).encode()).hexdigest(),
        "ocean_cells": int(mask.sum()),
        **stats,
    }


def _differs(key: str, recorded: Any, found: Any) -> bool:
    if key in ("mean", "std") and recorded is not None and found is not None:
        a, b = np.asarray(recorded, dtype=np.float64), np.asarray(found, dtype=np.float64)
        return a.shape != b.shape or not np.allclose(a, b, rtol=STATS_RTOL, atol=0.0)
    return recorded != found


def identity_difference(recorded: dict[str, Any], found: dict[str, Any]) -> str | None:
    """The first recorded part of an identity that ``found`` does not match, in words (None: same).

    Keys missing from ``recorded`` (older records) are not compared.
    """
    for key in KEYS:
        if key in recorded and _differs(key, recorded[key], found.get(key)):
            what = NAMES.get(key, "normalisation std" if key == "std" else key)
            if key in ("mask_sha256", "mean", "std"):
                return f"{what} differs"
            return f"{what} differs: {found.get(key)} here, {recorded[key]} recorded"
    return None
