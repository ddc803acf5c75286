"""The stream of reference states: per-cell climatology, per-state summaries, CRPS columns of every ensemble.

``evaluate`` reads the reference split one state at a time (a 512 x 512 test year is never held
in memory). Per state this keeps only what the scores and their intervals need: Welford moments
per cell, ice-cover counts, the MIZ area and the other aggregates, the PSD of every spectral
variable (``[K]`` each), the values at the cell sample (:mod:`.context`), and for every scored
ensemble (the models and the floor) one column of its CRPS observation term. The per-state
summaries let the bootstrap resample the states exactly (:mod:`.replicates`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.evaluation import metrics as M
from hpc_seaice.evaluation.aggregates import AGGREGATES, ocean_aggregates
from hpc_seaice.evaluation.calibration import ice_covered
from hpc_seaice.evaluation.context import CH, SPECTRAL_VARIABLES, ScoringContext, field_spectra
from hpc_seaice.evaluation.generated import GeneratedModel
from hpc_seaice.evaluation.plateaus import plateau_counts


class RunningMoments:
    """Per-cell mean and variance over a stream of states (Welford, float64)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.count = 0
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)

    def update(self, x: np.ndarray) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count, 1))


class ReferenceStream:
    """Everything kept from the reference states, filled by :meth:`add` one state at a time."""

    def __init__(self, ctx: ScoringContext, sources: Sequence[GeneratedModel], wavelength_km: np.ndarray) -> None:
        self.ctx = ctx
        self.wavelength_km = np.asarray(wavelength_km, dtype=np.float64)  # of the spectrum rings k = 1 .. K
        self.sources = list(sources)
        grid = ctx.grid
        self.moments = RunningMoments((len(VARIABLES), *grid))
        self.cover_count = np.zeros(grid, dtype=np.int64)
        self.miz_km2: list[float] = []
        self.plateaus = np.zeros(4, dtype=np.int64)
        self.aggregates: dict[str, list[float]] = {name: [] for name in AGGREGATES}
        self.spectra: dict[str, list[np.ndarray]] = {var: [] for var in SPECTRAL_VARIABLES}
        self.cells: list[np.ndarray] = []  # per state [C, S] float32
        self.example: np.ndarray | None = None

    def add(self, state: np.ndarray) -> None:
        """One state ``[C, H, W]`` (float64, land already 0)."""
        ctx = self.ctx
        if self.example is None:
            self.example = state.copy()
        self.moments.update(state)
        self.cover_count += ice_covered(state[CH["sic"]])
        self.miz_km2.append(float(M.miz_area(state[CH["sic"]], ctx.mask, ctx.cell_area_km2)))
        self.plateaus += plateau_counts(state, ctx.mask)
        for var, psd in field_spectra(state[None], ctx.psd_of).items():
            self.spectra[var].append(psd[0])
        obs = state[:, ctx.ocean].astype(np.float32)
        for name, value in ocean_aggregates(obs[CH["sit"]], obs[CH["sic"]], ctx.ocean_area_km2).items():
            self.aggregates[name].append(float(value))
        self.cells.append(obs[:, ctx.cells])
        for source in self.sources:
            source.add_state(list(obs))

    @property
    def num_states(self) -> int:
        return self.moments.count

    def spectra_array(self, var: str) -> np.ndarray:
        """``[T, K]`` the PSD of every state added."""
        return np.stack(self.spectra[var])

    def mean_psd(self, var: str) -> np.ndarray:
        return self.spectra_array(var).mean(axis=0)

    def aggregate_array(self, name: str) -> np.ndarray:
        return np.asarray(self.aggregates[name], dtype=np.float64)

    def cells_array(self) -> np.ndarray:
        """``[T, C, S]`` the cell-sample values of every state added."""
        return np.stack(self.cells)
