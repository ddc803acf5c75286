"""One scored ensemble (a samples file, or the floor): its members and what does not need the reference.

Everything that depends only on the generated ensemble is computed once when it is read
(the spread part of the CRPS, mean and std fields, ice-cover probability, aggregates, spectra of
every variable, bounds and plateau shares); the pass over the reference states then adds one
column of the CRPS observation term per state (:class:`.bootstrap.EnsembleCrps`).

A samples file (:func:`load_generated`) and the floor (validation states, :mod:`.floor`) both end
in :func:`generated_from_fields`, so the floor is scored by exactly the code that scores a model.
Per-sample summaries (CRPS parts, aggregates, spectra, the cell sample) are kept so that every
score can be recomputed on a resample of the members (:mod:`.replicates`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.samples_file import RAW_SUFFIX, read_samples, sample_arrays, variable_values
from hpc_seaice.data.format.variables import BOUNDS, VARIABLES
from hpc_seaice.data.geo.cell_geometry import great_circle_m
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation import metrics as M
from hpc_seaice.evaluation.aggregates import ocean_aggregates
from hpc_seaice.evaluation.bootstrap import EnsembleCrps
from hpc_seaice.evaluation.calibration import sea_ice_cover_probability
from hpc_seaice.evaluation.context import CH, ScoringContext, field_spectra
from hpc_seaice.evaluation.plateaus import out_of_bounds_applies, plateau_shares

LAT_LON_TOLERANCE_M = 100.0  # cell centres further apart than this: another grid (float32 lat/lon ~ 1 m)


@dataclass
class GeneratedModel:
    """One ensemble: its members, per-sample summaries and the CRPS parts filled over the reference states."""

    name: str
    path: Path
    attrs: dict[str, Any]
    num_samples: int
    ocean_members: list[np.ndarray]  # per channel [N, P] float32 (ocean cells only)
    crps: EnsembleCrps  # exact CRPS parts: B [N, N] now, one column of A [N, T] per reference state
    aggregates: dict[str, np.ndarray]  # per aggregate [N] (extent, area, volume, MIZ area)
    spectra: dict[str, np.ndarray]  # per spectral variable [N, K]
    cells: np.ndarray  # [N, C, S] values at the context's cell sample
    mean_field: np.ndarray  # [C, H, W]
    std_field: np.ndarray  # [C, H, W]
    cover_probability: np.ndarray  # [H, W]
    miz_km2: np.ndarray  # [N]
    out_of_bounds: np.ndarray  # [C], NaN where it does not apply (censored decoder)
    out_of_bounds_source: str  # "raw" (before clipping), "stored" (as written) or "n/a (censored decoder)"
    plateau_shares: dict[str, float]
    example: np.ndarray  # [C, H, W] the first sample, for the maps
    variogram: Any = None  # a .spatial.VariogramScore once the context has a coarse grid

    def add_state(self, obs: list[np.ndarray]) -> None:
        """One reference state, per variable its ocean cells ``[P]``: one more column of each score's parts."""
        self.crps.add_state(obs)
        if self.variogram is not None:
            self.variogram.add_state(obs)

    @property
    def psd_sit(self) -> np.ndarray:
        return self.spectra["sit"].mean(axis=0)


def load_generated(
    path: Path, name: str, ctx: ScoringContext, assume_units: Mapping[str, str] | None = None
) -> GeneratedModel:
    """Read a samples file and compute its ensemble-only scores; user errors for another grid or mask.

    Values are read in the project's units: each variable's ``units`` converted, or replaced by
    ``assume_units`` (``--assume-units``, parsed).
    """
    mask = ctx.mask
    ds = read_samples(path)
    try:
        check_same_grid(ds, path, "samples file", ctx.grid, mask, ctx.lat_lon, ctx.data_desc)
        if ds.sizes["sample"] < 1:
            raise UserError(f"samples file {path} holds no sample")
        fields, _, _ = sample_arrays(ds, with_raw=False, assumed=assume_units)
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items()}
        # Bounds before clipping where the file keeps them, one variable at a time (memory).
        applies = out_of_bounds_applies(attrs)
        oob = np.zeros(len(VARIABLES)) if applies else np.full(len(VARIABLES), np.nan)
        raw_found = False
        for c, var in enumerate(VARIABLES if applies else ()):
            lower, upper = BOUNDS[var]
            if var + RAW_SUFFIX in ds.variables:
                values = variable_values(ds, var + RAW_SUFFIX, assume_units)[:, None]
                raw_found = True
            else:
                values = fields[:, c : c + 1]
            oob[c] = M.fraction_out_of_bounds(values, [lower], [upper], mask)[0]
    finally:
        ds.close()
    name = str(attrs.get("model") or name)
    oob_source = ("raw" if raw_found else "stored") if applies else "n/a (censored decoder)"
    return generated_from_fields(fields, name, path, attrs, ctx, oob, oob_source)


def check_same_grid(
    ds: Any,
    path: Path,
    what: str,
    grid: tuple[int, int],
    mask: np.ndarray,
    lat_lon: tuple[np.ndarray, np.ndarray],
    data_desc: str,
) -> None:
    """A file's grid (``ds``: an ``xarray.Dataset`` with ``y``, ``x``, ``mask`` and, where present,
    ``lat``/``lon``) is the data set's: same size, same ocean mask, cell centres within
    :data:`LAT_LON_TOLERANCE_M`; else one line naming ``what`` (``samples file``), the file and the difference."""
    shape = (ds.sizes["y"], ds.sizes["x"])
    if shape != tuple(grid):
        raise UserError(
            f"grid mismatch: {what} {path} is {shape[0]}x{shape[1]}, data set {data_desc} is {grid[0]}x{grid[1]}"
        )
    differ = int(((ds["mask"].values > 0.5) != (mask > 0.5)).sum())
    if differ:
        raise UserError(f"land mask mismatch: {what} {path} differs from data set {data_desc} in {differ} cells")
    if "lat" in ds.variables and "lon" in ds.variables:
        # Same shape and mask is not the same grid (e.g. another crop of an all-ocean region).
        apart = great_circle_m(ds["lat"].values, ds["lon"].values, *lat_lon)
        if not apart.max() <= LAT_LON_TOLERANCE_M:
            raise UserError(
                f"lat/lon mismatch: {what} {path} is up to {apart.max() / 1e3:.3g} km away from "
                f"the cells of data set {data_desc}"
            )


def generated_from_fields(
    fields: np.ndarray,
    name: str,
    path: Path,
    attrs: dict[str, Any],
    ctx: ScoringContext,
    out_of_bounds: np.ndarray,
    out_of_bounds_source: str,
) -> GeneratedModel:
    """An ensemble ``[N, C, H, W]`` (physical values, land 0) with its ensemble-only scores and summaries."""
    mask, ocean = ctx.mask, ctx.ocean
    n = fields.shape[0]
    ocean_members = [np.ascontiguousarray(fields[:, c][:, ocean]) for c in range(len(VARIABLES))]
    return GeneratedModel(
        name=name,
        path=path,
        attrs=attrs,
        num_samples=n,
        ocean_members=ocean_members,
        # The pair terms do not depend on the observation: once per model, not once per state.
        crps=EnsembleCrps(ocean_members),
        aggregates=ocean_aggregates(ocean_members[CH["sit"]], ocean_members[CH["sic"]], ctx.ocean_area_km2),
        spectra=field_spectra(fields, ctx.psd_of),
        cells=np.stack([m[:, ctx.cells] for m in ocean_members], axis=1),
        mean_field=fields.mean(axis=0, dtype=np.float64),
        std_field=fields.std(axis=0, dtype=np.float64),
        cover_probability=sea_ice_cover_probability(fields[:, CH["sic"]]),
        miz_km2=M.miz_area(fields[:, CH["sic"]], mask, ctx.cell_area_km2),
        out_of_bounds=out_of_bounds,
        out_of_bounds_source=out_of_bounds_source,
        plateau_shares=plateau_shares(fields, mask),
        example=fields[0].copy(),
    )
