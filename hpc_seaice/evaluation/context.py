"""What every scored source (samples file, floor, reference state) is measured with: one grid context.

``evaluate`` builds one :class:`ScoringContext` from the reference data set and hands it to every
source, so that the models, the floor and the test states go through exactly the same spectrum
estimator, cell areas and cell sample. Why one object: each per-source score must be computed the
same way for the floor to be a floor (a different box or a different cell sample would be a
different score, not a lower bound).

Per-field summaries computed here are what the bootstrap recombines (:mod:`.replicates`):

- :func:`field_spectra`: the isotropic PSD of each field of every spectral variable (the five
  variables and the ice speed), ``[N, K]`` per variable, so the PSD of any resample of the
  fields is a weighted mean of rows (the estimator averages ``|F|^2`` over fields);
- the cell sample (:attr:`ScoringContext.cells`): a fixed random set of at most
  :data:`CELL_SAMPLE` ocean cells at which every source keeps its values, for the intervals of
  the per-cell climatology scores (mean/std fields, ice-cover calibration); all ocean cells
  when the grid has fewer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.data.geo.deformation import speed

CH = {name: i for i, name in enumerate(VARIABLES)}
SPECTRAL_VARIABLES: tuple[str, ...] = (*VARIABLES, "speed")
CELL_SAMPLE = 8192  # cells kept per state for the per-cell intervals (60 MB for a 365-state year)
CELL_SAMPLE_SEED = 0


@dataclass
class ScoringContext:
    """The reference grid and the estimators every source is scored with."""

    data_desc: str
    grid: tuple[int, int]
    mask: np.ndarray  # [H, W] float32, 1 = ocean
    cell_area_km2: np.ndarray  # [H, W]
    psd_of: Callable[[np.ndarray], Any]  # fields [..., H, W] -> Spectrum (averaged over leading dims)
    lat_lon: tuple[np.ndarray, np.ndarray]
    cells: np.ndarray  # indices into the ocean-cell vector: the cell sample

    @property
    def ocean(self) -> np.ndarray:
        return self.mask > 0.5

    @property
    def ocean_area_km2(self) -> np.ndarray:
        """``[P]`` area of each ocean cell, in the order of ``fields[..., ocean]``."""
        return self.cell_area_km2[self.ocean]


def cell_sample(num_ocean: int, size: int = CELL_SAMPLE, seed: int = CELL_SAMPLE_SEED) -> np.ndarray:
    """Sorted indices of ``min(num_ocean, size)`` ocean cells drawn without replacement (fixed seed)."""
    if num_ocean <= size:
        return np.arange(num_ocean)
    return np.sort(np.random.default_rng(seed).choice(num_ocean, size, replace=False))


def spectral_field(fields: np.ndarray, var: str) -> np.ndarray:
    """``[..., H, W]`` field of one spectral variable from states ``[..., C, H, W]`` (speed from u, v)."""
    if var == "speed":
        return speed(fields[..., CH["siu"], :, :], fields[..., CH["siv"], :, :])
    return np.asarray(fields[..., CH[var], :, :], dtype=np.float64)


def field_spectra(fields: np.ndarray, psd_of: Callable[[np.ndarray], Any]) -> dict[str, np.ndarray]:
    """Per spectral variable, the PSD of every state of ``fields [N, C, H, W]``: ``[N, K]``."""
    out = {}
    for var in SPECTRAL_VARIABLES:
        values = spectral_field(fields, var)
        out[var] = np.stack([psd_of(values[j]).psd for j in range(values.shape[0])])
    return out
