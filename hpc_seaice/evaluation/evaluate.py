"""`hpc-seaice evaluate`: compare generated ensembles (and autoencoder reconstructions) with a split.

One pass streams over the reference states (default: the test split), so a 512 x 512 test year
is never held in memory; per state it updates the reference climatology (Welford mean and
variance per cell), the ice-cover counts, the marginal-ice-zone area, the thickness spectrum
and, for every model, the observation term of the ensemble CRPS. Each generated ensemble is held
in memory (its ocean cells only, ``N x C x P`` float32) because the CRPS against a state needs all
members. Several ``--samples`` files are scored in the same pass and land in one table and one
set of overlaid curves, as in the paper.

Scores (our definitions where the paper's could not be recovered; docs/sample_and_evaluate.md lists them):

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
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance
from tqdm import tqdm

from hpc_seaice.data.blocks import evenly_spaced
from hpc_seaice.data.format.units import parse_assume_units
from hpc_seaice.data.format.variables import ICE_COVER_THRESHOLD, VARIABLES
from hpc_seaice.data.geo.cell_geometry import grid_geometry
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation import metrics as M
from hpc_seaice.evaluation import report
from hpc_seaice.evaluation.calibration import cover_calibration, ice_covered
from hpc_seaice.evaluation.figures import write_figures
from hpc_seaice.evaluation.generated import CH, load_generated
from hpc_seaice.evaluation.output import report_output, write_report_folder
from hpc_seaice.evaluation.plateaus import plateau_counts, shares_from_counts
from hpc_seaice.evaluation.reconstruction import load_reconstruction
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

RECONSTRUCT_BATCH = 4


# --- Sources being scored ----------------------------------------------------------------------


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


# --- The pass over the reference states --------------------------------------------------------


def _open_reference(data: str, split: str) -> ShardedDataset:
    if not Path(data).is_dir():
        raise UserError(f"data set folder {data} does not exist")
    ds = ShardedDataset(data, split, normalize=False)
    manifest = ds.manifest
    if manifest.kind != "fields":
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
    assume_units: str | None = None,
) -> dict[str, Any]:
    """Score sample files and autoencoder runs against a split; write metrics, report, figures.

    ``dx_km``: spacing of the spectrum's wavelength axis; default the grid's mean spacing in the
    spectrum box (from ``static.h5``'s geometry or lat/lon). Areas always use per-cell areas.
    ``assume_units``: ``--assume-units`` (:func:`~hpc_seaice.data.format.units.parse_assume_units`).

    Returns:
        The metrics dictionary written to ``out/metrics.json``.
    """
    if spectrum not in ESTIMATORS:
        raise UserError(f"--spectrum {spectrum!r}: expected one of {', '.join(ESTIMATORS)}")
    if step_sweep is not None:
        if not Path(step_sweep).is_dir():
            raise UserError(f"--step-sweep: run folder {step_sweep} does not exist")
        if sweep_samples < 2:
            raise UserError(f"--sweep-samples must be at least 2, got {sweep_samples}")
    if not samples and not reconstruct and step_sweep is None:
        raise UserError("nothing to evaluate: give --samples FILE.nc ..., --reconstruct RUN or --step-sweep RUN")
    sample_paths = [Path(p) for p in samples]
    for path in sample_paths:
        if not path.is_file():
            raise UserError(f"samples file {path} does not exist")
    if dx_km is not None and not (math.isfinite(dx_km) and dx_km > 0):
        raise UserError(f"--dx-km must be positive and finite, got {dx_km}")
    if max_states < 0:
        raise UserError(f"--max-states must be >= 0 (0 = all states), got {max_states}")
    assumed = parse_assume_units(assume_units)
    out = Path(out)
    output = report_output(out, [("--data", data), *(("--samples", p) for p in sample_paths)])

    ref = _open_reference(data, split)
    mask = (np.asarray(ref.static.mask) > 0.5).astype(np.float32)
    ocean = mask > 0.5
    grid = (int(mask.shape[0]), int(mask.shape[1]))
    box = _spectrum_box(mask, data)
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
        sweep_dir = out / "step_sweep"
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sample_paths += generate_sweep(str(step_sweep), sweep_dir, num=sweep_samples)

    names = _unique_names([p.stem for p in sample_paths])
    lat_lon = (np.asarray(ref.static.lat), np.asarray(ref.static.lon))
    models = [
        load_generated(p, n, data_desc, grid, mask, psd_of, cell_area, lat_lon, assumed)
        for p, n in zip(sample_paths, names)
    ]
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
            rec.add(batch, mask, lambda sit: psd_of(sit).psd)
        pending.clear()

    for i in tqdm(indices, desc="evaluate", unit="state", disable=not progress):
        state = np.asarray(ref.raw(int(i)), dtype=np.float64)
        state = np.where(ocean, state, 0.0)  # land carries no information (and may be NaN)
        if ref_example is None:
            ref_example = state.copy()
        moments.update(state)
        cover_count += ice_covered(state[CH["sic"]])
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
        result["reconstructions"][rec.name] = rec.scores(ref_psd, wavelength)
    result["step_sweep"] = sweep_table(result["models"])

    def figures(folder: Path) -> dict[str, str]:
        return write_figures(
            folder, result, models, recs, ref_example, mask, geometry, CH, _reference_label(ref, indices)
        )

    result = _jsonable(result)
    return write_report_folder(output, result, figures, report.write_report)


def _spectrum_box(mask: np.ndarray, data: str) -> tuple[slice, slice]:
    """The central-Arctic box of the spectra; user errors for a grid without ocean there."""
    if not (mask > 0.5).any():
        raise UserError(f"{data}/static.h5: the land mask has no ocean cell")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        box = central_arctic_box(mask)
    where = f"y {box[0].start}:{box[0].stop}, x {box[1].start}:{box[1].stop}"
    if not (mask[box[0], box[1]] > 0.5).any():
        raise UserError(f"{data}/static.h5: the spectrum box ({where}) holds no ocean cell")
    for warning in caught:
        print(f"evaluate: warning: {data}: {warning.message} ({where})", file=sys.stderr, flush=True)
    return box


def _reference_label(ref: ShardedDataset, indices: np.ndarray) -> str:
    return f"test {np.datetime_as_string(np.asarray(ref.times)[int(indices[0])], unit='h')}"


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
