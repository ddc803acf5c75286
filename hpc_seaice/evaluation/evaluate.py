"""`hpc-seaice evaluate`: compare generated ensembles (and autoencoder reconstructions) with a split.

One pass streams over the reference states (default: the test split), so a 512 x 512 test year
is never held in memory; per state it updates the reference climatology (Welford mean and
variance per cell), the ice-cover counts, the marginal-ice-zone area, the thickness spectrum
and, for every model, the observation term of the ensemble CRPS. Each generated ensemble is held
in memory (its ocean cells only, ``N x C x P`` float32) because the CRPS against a state needs all
members. Several ``--samples`` files are scored in the same pass and land in one table and one
set of overlaid curves, as in the paper.

Scores (PAPER_NOTES section 4; our definitions where the paper's could not be recovered):

- CRPS per variable: the generated ensemble as a forecast for every reference state (a
  climatological CRPS), averaged over ocean cells and states; standard and fair estimators.
- RMSE and bias of the generated mean and standard-deviation fields against the reference
  climatology (mean and std over states, per cell; population std for both).
- Fraction of ocean values outside the physical bounds, before clipping where the samples
  file carries ``<var>_raw``.
- Thickness PSD over the central Arctic; the mean log10 ratio generated / reference is a
  one-number smoothing score (negative = too smooth).
- Ice-cover probability calibration in 5 % bins of the reference probability, and its
  cell-weighted mean absolute gap.
- MIZ area (0.15 <= sic <= 0.8) per state: mean, std and the Wasserstein-1 distance between the
  generated and reference distributions.
- ``--reconstruct RUN_DIR``: the autoencoder's deterministic reconstruction of every reference
  state, RMSE and bias per variable and its thickness spectrum.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance
from tqdm import tqdm

from hpc_seaice.data.variables import BOUNDS, ICE_COVER_THRESHOLD, VARIABLES
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation import metrics as M
from hpc_seaice.evaluation.netcdf import RAW_SUFFIX, read_samples, sample_arrays
from hpc_seaice.evaluation.spectra import (
    DEFAULT_DX_KM,
    box_to_dict,
    central_arctic_box,
    isotropic_psd,
    wavenumbers,
)
from hpc_seaice.outputs import check_output_dir

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
    out_of_bounds: np.ndarray  # [C]
    out_of_bounds_source: str  # "raw" (before clipping) or "stored" (as written)
    example: np.ndarray  # [C, H, W] the first sample, for the maps
    abs_error_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(VARIABLES)))


@dataclass
class Reconstruction:
    """An autoencoder run whose reconstructions of the reference states are scored."""

    name: str
    run_dir: Path
    step: int
    vae: Any
    sq_error_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(VARIABLES)))
    error_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(VARIABLES)))
    psd_sum: np.ndarray | None = None
    count: int = 0
    example: np.ndarray | None = None


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
    """Indices of the reference states used: all, or ``max_states`` evenly spread over the split.

    Evenly spread (not the first ones) so that a capped evaluation still covers every season.
    """
    if max_states <= 0 or max_states >= num_states:
        return np.arange(num_states)
    return np.unique(np.linspace(0, num_states - 1, max_states).round().astype(np.int64))


def _load_model(
    path: Path,
    name: str,
    data_desc: str,
    grid: tuple[int, int],
    mask: np.ndarray,
    box: tuple[slice, slice],
    dx_km: float,
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
        # Bounds before clipping where the file keeps them, one variable at a time (memory).
        oob = np.zeros(len(VARIABLES))
        raw_found = False
        for c, var in enumerate(VARIABLES):
            lower, upper = BOUNDS[var]
            if var + RAW_SUFFIX in ds.variables:
                values = ds[var + RAW_SUFFIX].values[:, None]
                raw_found = True
            else:
                values = fields[:, c : c + 1]
            oob[c] = M.fraction_out_of_bounds(values, [lower], [upper], mask)[0]
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items()}
    finally:
        ds.close()
    ocean = mask > 0.5
    name = str(attrs.get("model") or name)
    n = fields.shape[0]
    ocean_members = [np.ascontiguousarray(fields[:, c][:, ocean]) for c in range(len(VARIABLES))]
    # The spread term does not depend on the observation: once per model, not once per state.
    spread = np.array([M.ensemble_spread_term(m.astype(np.float64), axis=0).mean() for m in ocean_members])
    spread_fair = spread * n / (n - 1) if n > 1 else np.full(len(VARIABLES), np.nan)
    cell_area = dx_km * dx_km
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
        cover_probability=M.sea_ice_cover_probability(fields[:, CH["sic"]]),
        miz_km2=M.miz_area(fields[:, CH["sic"]], mask, cell_area),
        psd_sit=isotropic_psd(fields[:, CH["sit"]], mask=mask, box=box, dx_km=dx_km).psd,
        out_of_bounds=oob,
        out_of_bounds_source="raw" if raw_found else "stored",
        example=fields[0].copy(),
    )


def _load_reconstruction(run_dir: Path, name: str, grid: tuple[int, int]) -> Reconstruction:
    if not run_dir.is_dir():
        raise UserError(f"--reconstruct: run folder {run_dir} does not exist")
    from hpc_seaice.train.checkpoint import load_inference_model

    loaded = load_inference_model(run_dir)
    vae = loaded.vae if getattr(loaded, "vae", None) is not None else loaded.model
    if not all(hasattr(vae, attr) for attr in ("normalize", "encode", "decode")):
        raise UserError(f"--reconstruct: run {run_dir} has no autoencoder (a data-space diffusion run?)")
    source = getattr(loaded, "vae_run", None) or loaded
    manifest = getattr(source, "data_manifest", None)
    if manifest is not None and tuple(manifest.grid) != tuple(grid):
        raise UserError(
            f"grid mismatch: autoencoder run {run_dir} was trained on {manifest.grid[0]}x{manifest.grid[1]}, "
            f"evaluation data set is {grid[0]}x{grid[1]}"
        )
    return Reconstruction(name=name, run_dir=run_dir, step=int(getattr(source, "step", -1)), vae=vae)


def _reconstruct(rec: Reconstruction, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Deterministic reconstruction (encoder mean, decoder clamp(mu)) of ``[B, C, H, W]`` states."""
    import torch

    vae = rec.vae
    try:
        device = next(vae.parameters()).device
    except (AttributeError, StopIteration):
        device = torch.device("cpu")
    x = torch.from_numpy(states).to(device=device, dtype=torch.float32)
    m = torch.from_numpy(mask.astype(np.float32)).to(device)
    with torch.no_grad():
        x_norm = vae.normalize(x) * m
        mean, _ = vae.encode(x_norm)
        out = vae.decode(mean, mask=m)
    return out.detach().cpu().numpy().astype(np.float64)


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
    dx_km: float = DEFAULT_DX_KM,
    progress: bool = True,
) -> dict[str, Any]:
    """Score sample files and autoencoder runs against a split; write metrics, report, figures.

    Returns:
        The metrics dictionary written to ``out/metrics.json``.
    """
    from hpc_seaice.evaluation import plots, report

    if not samples and not reconstruct:
        raise UserError("nothing to evaluate: give --samples FILE.nc ... and/or --reconstruct RUN_DIR")
    sample_paths = [Path(p) for p in samples]
    for path in sample_paths:
        if not path.is_file():
            raise UserError(f"samples file {path} does not exist")
    if dx_km <= 0:
        raise UserError(f"--dx-km must be positive, got {dx_km}")

    ref = _open_reference(data, split)
    mask = (np.asarray(ref.static.mask) > 0.5).astype(np.float32)
    ocean = mask > 0.5
    grid = (int(mask.shape[0]), int(mask.shape[1]))
    box = central_arctic_box(mask)
    data_desc = str(data)

    names = _unique_names([p.stem for p in sample_paths])
    models = [_load_model(p, n, data_desc, grid, mask, box, dx_km) for p, n in zip(sample_paths, names)]
    names = _unique_names([m.name for m in models])
    for model, name in zip(models, names):
        model.name = name
    rec_names = _unique_names([f"{Path(r).name} (reconstruction)" for r in reconstruct])
    recs = [_load_reconstruction(Path(r), n, grid) for r, n in zip(reconstruct, rec_names)]

    indices = select_states(len(ref), max_states)
    moments = RunningMoments((len(VARIABLES), *grid))
    cover_count = np.zeros(grid, dtype=np.int64)
    ref_miz: list[float] = []
    psd_sum = None
    ref_example = None
    cell_area = dx_km * dx_km
    pending: list[np.ndarray] = []

    def flush() -> None:
        if not pending:
            return
        batch = np.stack(pending)
        for rec in recs:
            pred = _reconstruct(rec, batch.astype(np.float32), mask)
            err = pred - batch
            rec.sq_error_sum += M.masked_mean(err**2, mask).sum(axis=0)
            rec.error_sum += M.masked_mean(err, mask).sum(axis=0)
            psd = isotropic_psd(pred[:, CH["sit"]], mask=mask, box=box, dx_km=dx_km).psd * len(batch)
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
        psd = isotropic_psd(state[CH["sit"]], mask=mask, box=box, dx_km=dx_km)
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
        "variables": list(VARIABLES),
        "ice_cover_threshold": ICE_COVER_THRESHOLD,
        "spectrum": {
            "variable": "sit",
            "box": box_to_dict(box),
            "wavenumber": k.tolist(),
            "wavelength_km": wavelength.tolist(),
            "test_psd": ref_psd.tolist(),
        },
        "reference": {
            "miz_area_km2": _summary(ref_miz_arr),
            "miz_area_km2_values": ref_miz_arr.tolist(),
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
        calibration = M.cover_calibration(p_test, model.cover_probability, mask)
        result["models"][model.name] = {
            "file": str(model.path),
            "num_samples": model.num_samples,
            "attrs": model.attrs,
            "out_of_bounds_source": model.out_of_bounds_source,
            "variables": per_var,
            "psd_sit": model.psd_sit.tolist(),
            "psd_sit_log10_ratio": _log_ratio(model.psd_sit, ref_psd),
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
            "psd_sit_log10_ratio": _log_ratio(rec_psd, ref_psd),
        }

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(out, result, models, recs, ref_example, p_test, mask, dx_km, ref, indices, plots)
    result["figures"] = figures
    result = _jsonable(result)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    tmp.replace(out / "metrics.json")
    report.write_report(out / "report.md", result)
    return result


def _figures(
    out: Path,
    result: dict[str, Any],
    models: list[GeneratedModel],
    recs: list[Reconstruction],
    ref_example: np.ndarray,
    p_test: np.ndarray,
    mask: np.ndarray,
    dx_km: float,
    ref: Any,
    indices: np.ndarray,
    plots: Any,
) -> dict[str, str]:
    figures: dict[str, str] = {}
    dx_m = dx_km * 1000.0
    label = "test"
    times = getattr(ref, "times", None)
    if times is not None and len(times) > int(indices[0]):
        label = f"test {np.datetime_as_string(np.asarray(times)[int(indices[0])], unit='h')}"
    rows = [(label, ref_example)]
    rows += [(f"{m.name} (sample 0)", m.example.astype(np.float64)) for m in models]
    rows += [(r.name, r.example) for r in recs if r.example is not None]
    plots.plot_maps(out / "maps.png", rows, mask, dx_m, dx_m, CH)
    figures["maps"] = "maps.png"

    wavelength = np.asarray(result["spectrum"]["wavelength_km"])
    curves = [("test", np.asarray(result["spectrum"]["test_psd"]), plots.REFERENCE_COLOUR, "-")]
    for i, m in enumerate(models):
        curves.append((m.name, m.psd_sit, plots.model_colour(i), "-"))
    for j, r in enumerate(recs):
        curves.append(
            (
                r.name,
                np.asarray(result["reconstructions"][r.name]["psd_sit"]),
                plots.model_colour(len(models) + j),
                "--",
            )
        )
    plots.plot_spectra(out / "spectra_sit.png", wavelength, curves, title="thickness, central Arctic")
    figures["spectra"] = "spectra_sit.png"

    if models:
        cal_curves = []
        for i, m in enumerate(models):
            cal = result["models"][m.name]["cover_calibration"]
            cal_curves.append(
                (
                    m.name,
                    np.array(cal["mean_test"], dtype=float),
                    np.array(cal["mean_generated"], dtype=float),
                    plots.model_colour(i),
                )
            )
        plots.plot_calibration(out / "calibration.png", cal_curves, ICE_COVER_THRESHOLD)
        figures["calibration"] = "calibration.png"
        plots.plot_miz_histogram(
            out / "miz_area.png",
            np.asarray(result["reference"]["miz_area_km2_values"]),
            [(m.name, m.miz_km2, plots.model_colour(i)) for i, m in enumerate(models)],
        )
        figures["miz_area"] = "miz_area.png"
    return figures


def _summary(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}


def _log_ratio(psd: np.ndarray, ref_psd: np.ndarray) -> float:
    """Mean over wavenumbers of log10(PSD / reference PSD): 0 = same energy, < 0 = smoother."""
    ok = (psd > 0) & (ref_psd > 0)
    return float(np.mean(np.log10(psd[ok] / ref_psd[ok]))) if ok.any() else float("nan")


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
    check_output_dir(args.out, "--out")
    result = evaluate(
        samples=args.samples,
        data=args.data,
        out=args.out,
        split=args.split,
        reconstruct=args.reconstruct,
        max_states=args.max_states,
        dx_km=getattr(args, "dx_km", DEFAULT_DX_KM),
    )
    out = Path(args.out)
    print(
        f"evaluated {len(result['models'])} model(s) and {len(result['reconstructions'])} reconstruction(s) "
        f"against {result['num_states']} {args.split} states: {out / 'report.md'}",
        flush=True,
    )
    return 0
