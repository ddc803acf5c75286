"""`hpc-seaice evaluate`: compare generated ensembles (and autoencoder reconstructions) with a split.

One pass streams over the reference states (default: the test split), so a 512 x 512 test year
is never held in memory; per state it updates the reference climatology (Welford mean and
variance per cell), the ice-cover counts, the marginal-ice-zone area, the thickness spectrum
and, for every model, the observation term of the ensemble CRPS. Each generated ensemble is held
in memory (its ocean cells only, ``N x C x P`` float32) because the CRPS against a state needs all
members. Several ``--samples`` files are scored in the same pass and land in one table and one
set of overlaid curves, as in the paper.

Scores (our definitions where the paper's could not be recovered; README "Evaluation" lists them):

- CRPS per variable: the generated ensemble as a forecast for every reference state (a
  climatological CRPS), averaged over ocean cells and states; standard and fair estimators.
- RMSE and bias of the generated mean and standard-deviation fields against the reference
  climatology (mean and std over states, per cell; population std for both).
- Fraction of ocean values outside the physical bounds, before clipping where the samples
  file carries ``<var>_raw``; n/a for a censored decoder (:mod:`.plateaus`). Share of ocean
  values exactly at each plateau (sit = 0, sic = 0, sic = 1, damage = 1), test and models.
- Thickness PSD over the central Arctic (tapered estimator by default, :mod:`.spectra`); the
  mean log10 ratio generated / reference, overall and per wavelength band (> 400 km,
  100-400 km, < 100 km; negative = too smooth).
- Ice-cover probability calibration in 5 % bins of the reference probability: cell-weighted
  and unweighted mean gaps, and the mean gap over cells with 0 < p_test < 1 (:mod:`.calibration`).
- MIZ area (0.15 <= sic <= 0.8, per-cell areas of the grid) per state: mean, std and the
  Wasserstein-1 distance between the generated and reference distributions.
- ``--reconstruct RUN_DIR``: the autoencoder's deterministic reconstruction of every reference
  state, RMSE and bias per variable and its thickness spectrum.
- ``--step-sweep RUN_DIR``: the main scores of one run sampled with 10, 20, 40 Heun steps.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance
from tqdm import tqdm

from hpc_seaice.data.cell_geometry import grid_geometry
from hpc_seaice.data.pca import evenly_spaced
from hpc_seaice.data.variables import BOUNDS, ICE_COVER_THRESHOLD, VARIABLES
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation import metrics as M
from hpc_seaice.evaluation.calibration import cover_calibration, sea_ice_cover_probability
from hpc_seaice.evaluation.netcdf import RAW_SUFFIX, read_samples, sample_arrays
from hpc_seaice.evaluation.plateaus import out_of_bounds_applies, plateau_counts, plateau_shares, shares_from_counts
from hpc_seaice.evaluation.reconstruction import load_reconstruction, reconstruct_states
from hpc_seaice.evaluation.spectra import (
    BANDS_KM,
    DEFAULT_DX_KM,
    ESTIMATORS,
    band_log_ratios,
    box_to_dict,
    central_arctic_box,
    isotropic_psd,
    log_ratio,
    wavenumbers,
)
from hpc_seaice.evaluation.step_sweep import DEFAULT_SWEEP_SAMPLES, generate_sweep, sweep_table

CH = {name: i for i, name in enumerate(VARIABLES)}
RECONSTRUCT_BATCH = 4


# --------------------------------------------------------------------------------------------
# Sources being scored
# --------------------------------------------------------------------------------------------


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


def _unique_names(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def select_states(num_states: int, max_states: int) -> np.ndarray:
    """Indices of the reference states used: all, or ``max_states`` evenly spread over the split."""
    return evenly_spaced(num_states, max_states)


def _load_model(
    path: Path,
    name: str,
    data_desc: str,
    grid: tuple[int, int],
    mask: np.ndarray,
    psd: Callable[[np.ndarray], Any],
    cell_area_km2: np.ndarray,
) -> GeneratedModel:
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
        fields, _, _ = sample_arrays(ds, with_raw=False)
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items()}
        # Bounds before clipping where the file keeps them, one variable at a time (memory).
        oob = np.zeros(len(VARIABLES)) if out_of_bounds_applies(attrs) else np.full(len(VARIABLES), np.nan)
        raw_found = False
        for c, var in enumerate(VARIABLES if out_of_bounds_applies(attrs) else ()):
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
        out_of_bounds_source=oob_source if out_of_bounds_applies(attrs) else "n/a (censored decoder)",
        plateau_shares=plateau_shares(fields, mask),
        example=fields[0].copy(),
    )


# --------------------------------------------------------------------------------------------
# The pass over the reference states
# --------------------------------------------------------------------------------------------


def _open_reference(data: str, split: str) -> Any:
    from hpc_seaice.data.dataset import ShardedDataset

    if not Path(data).is_dir():
        raise UserError(f"data set folder {data} does not exist")
    ds = ShardedDataset(data, split, normalize=False)
    manifest = ds.manifest
    if getattr(manifest, "kind", "fields") != "fields":
        raise UserError(f"{data} is a {manifest.kind} data set; evaluate needs the field data set")
    if list(manifest.variables) != list(VARIABLES):
        raise UserError(f"{data}: variables {list(manifest.variables)}, expected {list(VARIABLES)}")
    if len(ds) == 0:
        raise UserError(f"{data}: split {split!r} holds no state")
    return ds


def evaluate(
    samples: Sequence[str | os.PathLike],
    data: str,
    out: str | os.PathLike,
    split: str = "test",
    reconstruct: Sequence[str | os.PathLike] = (),
    max_states: int = 0,
    dx_km: float | None = None,
    progress: bool = True,
    spectrum: str = "tapered",
    step_sweep: str | os.PathLike | None = None,
    sweep_samples: int = DEFAULT_SWEEP_SAMPLES,
) -> dict[str, Any]:
    """Score sample files and autoencoder runs against a split; write metrics, report, figures.

    ``dx_km``: spacing of the spectrum's wavelength axis; default the grid's mean spacing in the
    spectrum box (from ``static.h5``'s geometry or lat/lon). Areas always use per-cell areas.

    Returns:
        The metrics dictionary written to ``out/metrics.json``.
    """
    from hpc_seaice.evaluation import report
    from hpc_seaice.evaluation.figures import write_figures

    if spectrum not in ESTIMATORS:
        raise UserError(f"--spectrum {spectrum!r}: expected one of {', '.join(ESTIMATORS)}")
    if step_sweep is not None:
        if not Path(step_sweep).is_dir():
            raise UserError(f"--step-sweep: run folder {step_sweep} does not exist")
        if sweep_samples < 2:
            raise UserError(f"--sweep-samples must be at least 2, got {sweep_samples}")
    if not samples and not reconstruct and step_sweep is None:
        raise UserError("nothing to evaluate: give --samples FILE.nc ... and/or --reconstruct RUN_DIR")
    sample_paths = [Path(p) for p in samples]
    for path in sample_paths:
        if not path.is_file():
            raise UserError(f"samples file {path} does not exist")
    if dx_km is not None and not dx_km > 0:
        raise UserError(f"--dx-km must be positive, got {dx_km}")

    ref = _open_reference(data, split)
    mask = (np.asarray(ref.static.mask) > 0.5).astype(np.float32)
    ocean = mask > 0.5
    grid = (int(mask.shape[0]), int(mask.shape[1]))
    box = central_arctic_box(mask)
    data_desc = str(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a repeated lat/lon point: zero spacing
        try:
            geometry = grid_geometry(ref.static, fallback_spacing_m=1000.0 * (dx_km or DEFAULT_DX_KM))
        except ValueError as exc:
            raise UserError(f"{data}/static.h5: {exc}") from None
    if geometry.source.startswith("nominal"):
        print(
            f"evaluate: warning: {data}: no usable cell geometry in static.h5 or lat/lon; using equal cells "
            f"of {geometry.source.split(' ', 1)[1]}",
            file=sys.stderr,
            flush=True,
        )
    cell_area = geometry.cell_area / 1e6  # km^2
    dx_km = dx_km or geometry.mean_spacing_km(box)
    psd_of = functools.partial(isotropic_psd, mask=mask, box=box, dx_km=dx_km, estimator=spectrum)
    if step_sweep is not None:
        sweep_dir = Path(out) / "step_sweep"
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sample_paths += generate_sweep(str(step_sweep), sweep_dir, num=sweep_samples)

    names = _unique_names([p.stem for p in sample_paths])
    models = [_load_model(p, n, data_desc, grid, mask, psd_of, cell_area) for p, n in zip(sample_paths, names)]
    names = [m.name for m in models]
    # Files of one run at different step counts (a step sweep): name them by their steps.
    names = [
        f"{n} ({m.attrs['steps']} steps)" if names.count(n) > 1 and "steps" in m.attrs else n
        for n, m in zip(names, models)
    ]
    names = _unique_names(names)
    for model, name in zip(models, names):
        model.name = name
    rec_names = _unique_names([f"{Path(r).name} (reconstruction)" for r in reconstruct])
    recs = [load_reconstruction(Path(r), n, grid) for r, n in zip(reconstruct, rec_names)]

    indices = select_states(len(ref), max_states)
    moments = RunningMoments((len(VARIABLES), *grid))
    cover_count = np.zeros(grid, dtype=np.int64)
    ref_miz: list[float] = []
    ref_plateaus = np.zeros(4, dtype=np.int64)
    psd_sum = None
    ref_example = None
    pending: list[np.ndarray] = []

    def flush() -> None:
        if not pending:
            return
        batch = np.stack(pending)
        for rec in recs:
            pred = reconstruct_states(rec, batch.astype(np.float32), mask)
            err = pred - batch
            rec.sq_error_sum += M.masked_mean(err**2, mask).sum(axis=0)
            rec.error_sum += M.masked_mean(err, mask).sum(axis=0)
            psd = psd_of(pred[:, CH["sit"]]).psd * len(batch)
            rec.psd_sum = psd if rec.psd_sum is None else rec.psd_sum + psd
            rec.count += len(batch)
            if rec.example is None:
                rec.example = pred[0]
        pending.clear()

    for i in tqdm(indices, desc="evaluate", unit="state", disable=not progress):
        state = np.asarray(ref.raw(int(i)), dtype=np.float64)
        state = np.where(ocean, state, 0.0)  # land carries no information (and may be NaN)
        if ref_example is None:
            ref_example = state.copy()
        moments.update(state)
        cover_count += state[CH["sic"]] >= ICE_COVER_THRESHOLD
        ref_miz.append(float(M.miz_area(state[CH["sic"]], mask, cell_area)))
        ref_plateaus += plateau_counts(state, mask)
        psd = psd_of(state[CH["sit"]])
        psd_sum = psd.psd if psd_sum is None else psd_sum + psd.psd
        obs = state[:, ocean].astype(np.float32)
        for model in models:
            for c, members in enumerate(model.ocean_members):
                # E|X - y| averaged over members and ocean cells (float64 accumulation).
                model.abs_error_sum[c] += np.abs(members - obs[c]).mean(dtype=np.float64)
        if recs:
            pending.append(state)
            if len(pending) >= RECONSTRUCT_BATCH:
                flush()
    flush()

    num_states = len(indices)
    ref_psd = psd_sum / num_states
    k, wavelength = wavenumbers(box[0].stop - box[0].start, dx_km)
    ref_std = moments.std
    p_test = cover_count / num_states
    ref_miz_arr = np.asarray(ref_miz)

    result: dict[str, Any] = {
        "data": str(data),
        "split": split,
        "num_states": num_states,
        "grid": list(grid),
        "dx_km": dx_km,
        "geometry": {
            "source": geometry.source,
            "mean_spacing_km": geometry.mean_spacing_km(),
            "ocean_area_km2": float(cell_area[ocean].sum()),
        },
        "variables": list(VARIABLES),
        "ice_cover_threshold": ICE_COVER_THRESHOLD,
        "spectrum": {
            "variable": "sit",
            "estimator": spectrum,
            "bands_km": {name: [lo, None if math.isinf(hi) else hi] for name, lo, hi in BANDS_KM},
            "box": box_to_dict(box),
            "wavenumber": k.tolist(),
            "wavelength_km": wavelength.tolist(),
            "test_psd": ref_psd.tolist(),
        },
        "reference": {
            "miz_area_km2": _summary(ref_miz_arr),
            "miz_area_km2_values": ref_miz_arr.tolist(),
            "plateau_shares": shares_from_counts(ref_plateaus, int(ocean.sum()) * num_states),
        },
        "models": {},
        "reconstructions": {},
    }
    for model in models:
        per_var = {}
        for c, var in enumerate(VARIABLES):
            crps = model.abs_error_sum[c] / num_states - model.spread[c]
            crps_fair = model.abs_error_sum[c] / num_states - model.spread_fair[c]
            per_var[var] = {
                "crps": crps,
                "crps_fair": crps_fair,
                "mean_rmse": M.rmse(model.mean_field[c], moments.mean[c], mask),
                "mean_bias": M.bias(model.mean_field[c], moments.mean[c], mask),
                "std_rmse": M.rmse(model.std_field[c], ref_std[c], mask),
                "std_bias": M.bias(model.std_field[c], ref_std[c], mask),
                "out_of_bounds": model.out_of_bounds[c],
            }
        calibration = cover_calibration(p_test, model.cover_probability, mask)
        result["models"][model.name] = {
            "file": str(model.path),
            "num_samples": model.num_samples,
            "attrs": model.attrs,
            "out_of_bounds_source": model.out_of_bounds_source,
            "variables": per_var,
            "psd_sit": model.psd_sit.tolist(),
            "psd_sit_log10_ratio": log_ratio(model.psd_sit, ref_psd),
            "psd_sit_band_log10_ratio": band_log_ratios(model.psd_sit, ref_psd, wavelength),
            "plateau_shares": model.plateau_shares,
            "cover_calibration": calibration.to_dict(),
            "miz_area_km2": _summary(model.miz_km2),
            "miz_area_km2_values": model.miz_km2.tolist(),
            "miz_area_wasserstein_km2": float(wasserstein_distance(model.miz_km2, ref_miz_arr)),
        }
    for rec in recs:
        rec_psd = rec.psd_sum / rec.count
        result["reconstructions"][rec.name] = {
            "run": str(rec.run_dir),
            "step": rec.step,
            "variables": {
                var: {
                    "rmse": math.sqrt(rec.sq_error_sum[c] / rec.count),
                    "bias": rec.error_sum[c] / rec.count,
                }
                for c, var in enumerate(VARIABLES)
            },
            "psd_sit": rec_psd.tolist(),
            "psd_sit_log10_ratio": log_ratio(rec_psd, ref_psd),
            "psd_sit_band_log10_ratio": band_log_ratios(rec_psd, ref_psd, wavelength),
        }
    result["step_sweep"] = sweep_table(result["models"])

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result["figures"] = write_figures(
        out, result, models, recs, ref_example, mask, geometry, CH, _reference_label(ref, indices)
    )
    result = _jsonable(result)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    tmp.replace(out / "metrics.json")
    report.write_report(out / "report.md", result)
    return result


def _reference_label(ref: Any, indices: np.ndarray) -> str:
    times = getattr(ref, "times", None)
    if times is not None and len(times) > int(indices[0]):
        return f"test {np.datetime_as_string(np.asarray(times)[int(indices[0])], unit='h')}"
    return "test"


def _summary(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}


def _jsonable(x: Any) -> Any:
    """numpy scalars/arrays to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def cli_evaluate(args: Any) -> int:
    """Handler of ``hpc-seaice evaluate``."""
    result = evaluate(
        samples=args.samples,
        data=args.data,
        out=args.out,
        split=args.split,
        reconstruct=args.reconstruct,
        max_states=args.max_states,
        dx_km=getattr(args, "dx_km", None),
        spectrum=getattr(args, "spectrum", "tapered"),
        step_sweep=getattr(args, "step_sweep", None),
        sweep_samples=getattr(args, "sweep_samples", DEFAULT_SWEEP_SAMPLES),
    )
    out = Path(args.out)
    print(
        f"evaluated {len(result['models'])} model(s) and {len(result['reconstructions'])} reconstruction(s) "
        f"against {result['num_states']} {args.split} states: {out / 'report.md'}",
        flush=True,
    )
    return 0
