"""Joint physical consistency of the variables: shares of ocean cells where they contradict each other.

Why: a model can get every variable's marginal right and still put thickness where it puts
no concentration (a Gaussian decoder clips each variable at its own bound, independently), or
move open water. Three checks, each the share of ocean cells, per state or sample:

- ``thickness_without_concentration``: ``sic <= 1e-3`` and ``sit > 0.01 m``. The thickness is
  the grid-cell mean (volume per cell area), the concentration times the floe thickness, so
  such a cell would hold floes more than 10 m thick on average: thickness without ice cover;
- ``concentration_without_thickness``: ``sit <= 1e-3 m`` and ``sic > 0.1``: floes thinner than
  1 cm on average over more than a tenth of the cell, ice cover without ice volume;
- ``velocity_without_ice``: no ice (``sic <= 1e-3`` and ``sit <= 1e-3 m``) and speed
  ``sqrt(siu^2 + siv^2) > 0.01 m/s`` (about 0.9 km per day). The velocities are the ice's, zero
  where there is no ice (exactly zero in the synthetic data).

The "zero" tolerances (1e-3) absorb storage and decoding round-off (stored exact zeros stay
exact; a float32 de-normalisation errs by about 1e-7 of the std); the "present" thresholds
(1 cm, 10 %, 1 cm/s) keep a value that is merely not exactly zero from counting as ice or drift,
and put each flagged combination beyond what the ice can be (10 m floes, 1 cm floes).
The reference states score (close to) zero; the floor and the test year say what a model
should reach. Per-sample shares are kept so the bootstrap can resample samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.evaluation.bootstrap import DEFAULT_BOOT, DEFAULT_SEED, bootstrap

ZERO_SIC = 1e-3  # concentration at or below this is "no ice"
ZERO_SIT = 1e-3  # m; thickness at or below this is "no ice"
PRESENT_SIT = 0.01  # m; thickness above this is ice
PRESENT_SIC = 0.1  # concentration above this is ice cover (with sit <= 1 mm: floes under 1 cm)
PRESENT_SPEED = 0.01  # m/s; speed above this is motion
CHECKS: tuple[str, ...] = (
    "thickness_without_concentration",
    "concentration_without_thickness",
    "velocity_without_ice",
)
TOLERANCES: dict[str, float] = {
    "zero_sic": ZERO_SIC,
    "zero_sit_m": ZERO_SIT,
    "present_sit_m": PRESENT_SIT,
    "present_sic": PRESENT_SIC,
    "present_speed_m_s": PRESENT_SPEED,
}


def inconsistency_shares(sit: np.ndarray, sic: np.ndarray, siu: np.ndarray, siv: np.ndarray) -> dict[str, np.ndarray]:
    """Shares of cells failing each check, over the last axis (the ocean cells ``[..., P]``) -> ``[...]``."""
    sit, sic = np.asarray(sit, dtype=np.float64), np.asarray(sic, dtype=np.float64)
    siu, siv = np.asarray(siu, dtype=np.float64), np.asarray(siv, dtype=np.float64)
    if not sit.shape == sic.shape == siu.shape == siv.shape:
        raise ValueError(f"shapes differ: sit {sit.shape}, sic {sic.shape}, siu {siu.shape}, siv {siv.shape}")
    if sit.shape[-1] == 0:
        raise ValueError("no ocean cell")
    no_conc = sic <= ZERO_SIC
    no_thick = sit <= ZERO_SIT
    speed = np.hypot(siu, siv)
    return {
        "thickness_without_concentration": (no_conc & (sit > PRESENT_SIT)).mean(axis=-1),
        "concentration_without_thickness": (no_thick & (sic > PRESENT_SIC)).mean(axis=-1),
        "velocity_without_ice": (no_conc & no_thick & (speed > PRESENT_SPEED)).mean(axis=-1),
    }


def field_inconsistency_shares(fields: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`inconsistency_shares` of fields ``[..., C, H, W]`` in the project's channel order."""
    x = np.asarray(fields)
    if x.shape[-3] != len(VARIABLES):
        raise ValueError(f"{x.shape[-3]} channels, expected {len(VARIABLES)} ({', '.join(VARIABLES)})")
    ocean = np.asarray(mask) > 0.5
    ch = {name: x[..., i, :, :][..., ocean] for i, name in enumerate(VARIABLES)}
    return inconsistency_shares(ch["sit"], ch["sic"], ch["siu"], ch["siv"])


def consistency_scores(
    shares: dict[str, np.ndarray], n_boot: int = DEFAULT_BOOT, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """Mean share per check over samples (or states) with its 95 % interval (samples resampled).

    ``shares[check]`` is ``[N]`` (:func:`inconsistency_shares` of each sample). JSON-ready:
    ``{check: {"estimate", "low", "high", "level"}, "tolerances": {...}}``.
    """
    out: dict[str, Any] = {}
    for check in CHECKS:
        x = np.asarray(shares[check], dtype=np.float64).reshape(-1)
        if x.size == 0:
            raise ValueError(f"{check}: no sample")
        out[check] = bootstrap(lambda s, _, x=x: float(x[s].mean()), x.size, 0, n_boot, seed).to_dict()
    out["tolerances"] = dict(TOLERANCES)
    return out
