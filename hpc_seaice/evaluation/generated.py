"""One samples file scored by ``hpc-seaice evaluate``: its ensemble and what does not need the reference.

Everything that depends only on the generated ensemble is computed once when the file is read
(the spread half of the CRPS, mean and std fields, ice-cover probability, MIZ areas, spectrum,
bounds and plateau shares); the pass over the reference states then adds the observation term
of the CRPS per state (:attr:`GeneratedModel.abs_error_sum`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.samples_file import RAW_SUFFIX, read_samples, sample_arrays
from hpc_seaice.data.format.variables import BOUNDS, VARIABLES
from hpc_seaice.data.geo.cell_geometry import great_circle_m
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation import metrics as M
from hpc_seaice.evaluation.calibration import sea_ice_cover_probability
from hpc_seaice.evaluation.plateaus import out_of_bounds_applies, plateau_shares

CH = {name: i for i, name in enumerate(VARIABLES)}
LAT_LON_TOLERANCE_M = 100.0  # cell centres further apart than this: another grid (float32 lat/lon ~ 1 m)


@dataclass
class GeneratedModel:
    """One samples file: its ensemble and the scores accumulated over the reference states."""

    name: str
    path: Path
    attrs: dict[str, Any]
    num_samples: int
    ocean_members: list[np.ndarray]  # per channel [N, P] float32 (ocean cells only)
    spread: np.ndarray  # [C] cell mean of 0.5 E|X - X'| (standard estimator)
    spread_fair: np.ndarray  # [C] the same with 1/(m(m-1))
    mean_field: np.ndarray  # [C, H, W]
    std_field: np.ndarray  # [C, H, W]
    cover_probability: np.ndarray  # [H, W]
    miz_km2: np.ndarray  # [N]
    psd_sit: np.ndarray  # [K]
    out_of_bounds: np.ndarray  # [C], NaN where it does not apply (censored decoder)
    out_of_bounds_source: str  # "raw" (before clipping), "stored" (as written) or "n/a (censored decoder)"
    plateau_shares: dict[str, float]
    example: np.ndarray  # [C, H, W] the first sample, for the maps
    abs_error_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(VARIABLES)))


def load_generated(
    path: Path,
    name: str,
    data_desc: str,
    grid: tuple[int, int],
    mask: np.ndarray,
    psd: Callable[[np.ndarray], Any],
    cell_area_km2: np.ndarray,
    lat_lon: tuple[np.ndarray, np.ndarray],
) -> GeneratedModel:
    """Read a samples file and compute its ensemble-only scores; user errors for another grid or mask.

    ``psd`` is the spectrum estimator applied to the thickness members (the same as the reference's).
    """
    ds = read_samples(path)
    try:
        shape = (ds.sizes["y"], ds.sizes["x"])
        if shape != tuple(grid):
            raise UserError(
                f"grid mismatch: samples file {path} is {shape[0]}x{shape[1]}, "
                f"data set {data_desc} is {grid[0]}x{grid[1]}"
            )
        if ds.sizes["sample"] < 1:
            raise UserError(f"samples file {path} holds no sample")
        sample_mask = ds["mask"].values > 0.5
        differ = int((sample_mask != (mask > 0.5)).sum())
        if differ:
            raise UserError(
                f"land mask mismatch: samples file {path} differs from data set {data_desc} in {differ} cells"
            )
        if "lat" in ds.variables and "lon" in ds.variables:
            # Same shape and mask is not the same grid (e.g. another crop of an all-ocean region).
            apart = great_circle_m(ds["lat"].values, ds["lon"].values, *lat_lon)
            if not apart.max() <= LAT_LON_TOLERANCE_M:
                raise UserError(
                    f"lat/lon mismatch: samples file {path} is up to {apart.max() / 1e3:.3g} km away from "
                    f"the cells of data set {data_desc}"
                )
        fields, _, _ = sample_arrays(ds, with_raw=False)
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items()}
        # Bounds before clipping where the file keeps them, one variable at a time (memory).
        applies = out_of_bounds_applies(attrs)
        oob = np.zeros(len(VARIABLES)) if applies else np.full(len(VARIABLES), np.nan)
        raw_found = False
        for c, var in enumerate(VARIABLES if applies else ()):
            lower, upper = BOUNDS[var]
            if var + RAW_SUFFIX in ds.variables:
                values = ds[var + RAW_SUFFIX].values[:, None]
                raw_found = True
            else:
                values = fields[:, c : c + 1]
            oob[c] = M.fraction_out_of_bounds(values, [lower], [upper], mask)[0]
    finally:
        ds.close()
    ocean = mask > 0.5
    name = str(attrs.get("model") or name)
    n = fields.shape[0]
    ocean_members = [np.ascontiguousarray(fields[:, c][:, ocean]) for c in range(len(VARIABLES))]
    # The spread term does not depend on the observation: once per model, not once per state.
    spread = np.array([M.ensemble_spread_term(m.astype(np.float64), axis=0).mean() for m in ocean_members])
    spread_fair = spread * n / (n - 1) if n > 1 else np.full(len(VARIABLES), np.nan)
    oob_source = "raw" if raw_found else "stored"
    return GeneratedModel(
        name=name,
        path=path,
        attrs=attrs,
        num_samples=n,
        ocean_members=ocean_members,
        spread=spread,
        spread_fair=spread_fair,
        mean_field=fields.mean(axis=0, dtype=np.float64),
        std_field=fields.std(axis=0, dtype=np.float64),
        cover_probability=sea_ice_cover_probability(fields[:, CH["sic"]]),
        miz_km2=M.miz_area(fields[:, CH["sic"]], mask, cell_area_km2),
        psd_sit=psd(fields[:, CH["sit"]]).psd,
        out_of_bounds=oob,
        out_of_bounds_source=oob_source if applies else "n/a (censored decoder)",
        plateau_shares=plateau_shares(fields, mask),
        example=fields[0].copy(),
    )
