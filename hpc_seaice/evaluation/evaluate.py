"""`hpc-seaice evaluate`: compare generated ensembles (and autoencoder reconstructions) with a split.

One pass streams over the reference states (default: the test split), so a 512 x 512 test year
is never held in memory (:mod:`.reference`); each generated ensemble is held in memory (its ocean
cells only, ``N x C x P`` float32) because the CRPS against a state needs all members. Several
``--samples`` files are scored in the same pass and land in one table and one set of overlaid
curves, as in the paper.

The floor (:mod:`.floor`): as many states of the validation split as the models have samples,
scored by the same code as a samples file; ``metrics.json`` key ``floor``, a row in every table,
a grey line in every figure. Every score has a 95 % bootstrap interval (:mod:`.replicates`,
``--bootstrap`` replicates, fixed seed). ``--findings`` decides the study's three findings
(:mod:`.findings`). The scores are listed in ``docs/evaluation.md``:

- CRPS per variable (standard and fair), RMSE and bias of the mean and std fields against the
  reference climatology, shares beyond the physical bounds and at the plateaus;
- PSD of the five variables and of speed over the central Arctic (:mod:`.spectra`), log10 ratio
  to the reference overall and per band (> 400 km, 100-400 km, < 100 km);
- ice-cover calibration (:mod:`.calibration`), MIZ area and the other aggregates per state
  (extent, area, volume; :mod:`.aggregates`) with their Wasserstein-1 and CRPS;
- the variogram score on a coarse-grained field (:mod:`.spatial`);
- ``--reconstruct RUN_DIR``: the autoencoder's reconstruction of every reference state;
- ``--step-sweep RUN_DIR``: the main scores of one run sampled with 15, 30, 60 Heun steps.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hpc_seaice.data.blocks import evenly_spaced
from hpc_seaice.data.format.units import parse_assume_units
from hpc_seaice.data.format.variables import ICE_COVER_THRESHOLD, VARIABLES
from hpc_seaice.data.geo.cell_geometry import CellGeometry, grid_geometry
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation import replicates as R
from hpc_seaice.evaluation import report
from hpc_seaice.evaluation.bootstrap import DEFAULT_BOOT, DEFAULT_SEED
from hpc_seaice.evaluation.context import ScoringContext, cell_sample
from hpc_seaice.evaluation.deformation_scores import DeformationAccumulator, source_deformation
from hpc_seaice.evaluation.figures import write_figures
from hpc_seaice.evaluation.findings import Roles, decide_findings
from hpc_seaice.evaluation.floor import FLOOR_SPLIT, floor_size, load_floor, split_problem
from hpc_seaice.evaluation.generated import GeneratedModel, load_generated
from hpc_seaice.evaluation.output import jsonable, report_output, write_report_folder
from hpc_seaice.evaluation.plateaus import shares_from_counts
from hpc_seaice.evaluation.reconstruction import load_reconstruction
from hpc_seaice.evaluation.reference import ReferenceStream
from hpc_seaice.evaluation.roles import FindingRoles
from hpc_seaice.evaluation.scores import SourceScores, reference_entry, score_source
from hpc_seaice.evaluation.source_checks import (
    TestProjection,
    consistency_entry,
    memorization_entries,
    reference_consistency,
)
from hpc_seaice.evaluation.spatial_scores import attach_variogram
from hpc_seaice.evaluation.spectra import (
    BANDS_KM,
    DEFAULT_DX_KM,
    ESTIMATORS,
    box_to_dict,
    central_arctic_box,
    isotropic_psd,
    wavenumbers,
)
from hpc_seaice.evaluation.step_sweep import DEFAULT_SWEEP_SAMPLES, generate_sweep, sweep_table

RECONSTRUCT_BATCH = 4


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


def open_reference(data: str | os.PathLike, split: str | None) -> ShardedDataset:
    """The field data set at ``data`` (split ``split``, None = every time) in physical units, checked:
    one line naming the folder when it is missing, latent, has other variables or no state."""
    data = str(data)
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


def _check_options(samples, reconstruct, step_sweep, sweep_samples, dx_km, max_states, n_boot, spectrum) -> None:
    if spectrum not in ESTIMATORS:
        raise UserError(f"--spectrum {spectrum!r}: expected one of {', '.join(ESTIMATORS)}")
    if step_sweep is not None:
        if not Path(step_sweep).is_dir():
            raise UserError(f"--step-sweep: run folder {step_sweep} does not exist")
        if sweep_samples < 2:
            raise UserError(f"--sweep-samples must be at least 2, got {sweep_samples}")
    if not samples and not reconstruct and step_sweep is None:
        raise UserError("nothing to evaluate: give --samples FILE.nc ..., --reconstruct RUN or --step-sweep RUN")
    for path in samples:
        if not Path(path).is_file():
            raise UserError(f"samples file {path} does not exist")
    if dx_km is not None and not (math.isfinite(dx_km) and dx_km > 0):
        raise UserError(f"--dx-km must be positive and finite, got {dx_km}")
    if max_states < 0:
        raise UserError(f"--max-states must be >= 0 (0 = all states), got {max_states}")
    if n_boot < 1:
        raise UserError(f"--bootstrap must be at least 1 replicate, got {n_boot}")


@dataclass
class Evaluation:
    """What one evaluation measured: the ``metrics.json`` dictionary and every source's replicates."""

    metrics: dict[str, Any]
    scores: dict[str, SourceScores]  # the models' (by name)
    floor: SourceScores | None
    wavelength_km: np.ndarray

    def decide(self, roles: Roles) -> list[dict[str, Any]]:
        """The three findings for any three of the evaluated models (:func:`.findings.decide_findings`)."""
        if self.floor is None:
            raise UserError(f"the findings need the floor, from split {FLOOR_SPLIT!r}")
        return decide_findings(self.metrics, self.scores, self.floor, roles, self.wavelength_km)


def run_evaluation(
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
    findings: FindingRoles | None = None,
    n_boot: int = DEFAULT_BOOT,
    seed: int = DEFAULT_SEED,
    figures: bool = True,
    assume_units: str | None = None,
) -> Evaluation:
    """Score sample files, the floor and autoencoder runs against a split; write metrics, report, figures.

    ``dx_km``: spacing of the spectrum's wavelength axis; default the grid's mean spacing in the
    spectrum box (from ``static.h5``'s geometry or lat/lon). Areas always use per-cell areas.
    ``findings``: the files of the three roles (:func:`.roles.parse_findings`); they are added to
    ``samples`` when missing, and the three findings are decided (this needs the validation split).
    ``n_boot``, ``seed``: bootstrap replicates of every interval and their seed. ``figures``: draw the PNGs.
    ``assume_units``: ``--assume-units`` (:func:`~hpc_seaice.data.format.units.parse_assume_units`).

    Returns:
        The :class:`Evaluation`; its ``metrics`` are written to ``out/metrics.json``.
    """
    samples = [Path(p) for p in samples]
    if findings is not None:
        have = {p.resolve() for p in samples}
        samples += [p for p in findings.all() if p.resolve() not in have]
    _check_options(samples, reconstruct, step_sweep, sweep_samples, dx_km, max_states, n_boot, spectrum)
    assumed = parse_assume_units(assume_units)
    out = Path(out)
    output = report_output(out, [("--data", data), *(("--samples", p) for p in samples)])
    ref = open_reference(data, split)
    floor_problem = split_problem(data) if split != FLOOR_SPLIT else f"the reference split is {FLOOR_SPLIT}"
    if findings is not None and floor_problem:
        raise UserError(f"--findings needs the floor, from split {FLOOR_SPLIT!r}: {floor_problem}")
    ctx, box, geometry, dx_km = _context(ref, data, dx_km, spectrum)
    if step_sweep is not None:
        sweep_dir = out / "step_sweep"
        sweep_dir.mkdir(parents=True, exist_ok=True)
        samples += generate_sweep(str(step_sweep), sweep_dir, num=sweep_samples)

    models = _load_models(samples, ctx, assumed)
    floor, floor_scores = None, None
    if floor_problem:
        print(f"evaluate: warning: no floor ({floor_problem})", file=sys.stderr, flush=True)
    else:
        floor = load_floor(data, floor_size([m.num_samples for m in models]), ctx)
    sources = models + ([floor] if floor is not None else [])
    attach_variogram(sources, ctx, np.asarray(ref.static.std, dtype=np.float64))
    rec_names = _unique_names([f"{Path(r).name} (reconstruction)" for r in reconstruct])
    recs = [load_reconstruction(Path(r), n, ctx.grid) for r, n in zip(reconstruct, rec_names)]

    indices = select_states(len(ref), max_states)
    k, wavelength = wavenumbers(box[0].stop - box[0].start, dx_km)
    stream = ReferenceStream(ctx, sources, wavelength)
    tests = TestProjection(ctx.mask, np.asarray(ref.static.mean), np.asarray(ref.static.std))

    def deformation() -> DeformationAccumulator:
        return DeformationAccumulator(ctx.grid, geometry.dx, geometry.dy, geometry.mean_spacing_km())

    ref_deformation = deformation()
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            batch = np.stack(pending)
            for rec in recs:
                rec.add(batch, ctx.mask, lambda sit: ctx.psd_of(sit).psd)
            pending.clear()

    for i in tqdm(indices, desc="evaluate", unit="state", disable=not progress):
        state = np.asarray(ref.raw(int(i)), dtype=np.float64)
        state = np.where(ctx.ocean, state, 0.0)  # land carries no information (and may be NaN)
        stream.add(state)
        tests.add(state[:, ctx.ocean])
        ref_deformation.add(state[None], ctx.mask)
        if recs:
            pending.append(state)
            if len(pending) >= RECONSTRUCT_BATCH:
                flush()
    flush()

    num_states = stream.num_states
    draws = R.draw(num_states, {s.name: s.num_samples for s in sources}, n_boot, seed)
    ref_psd = stream.mean_psd("sit")
    ref_miz = np.asarray(stream.miz_km2)
    result: dict[str, Any] = {
        "data": str(data),
        "split": split,
        "num_states": num_states,
        "grid": list(ctx.grid),
        "dx_km": dx_km,
        "geometry": {
            "source": geometry.source,
            "mean_spacing_km": geometry.mean_spacing_km(),
            "ocean_area_km2": float(ctx.ocean_area_km2.sum()),
        },
        "variables": list(VARIABLES),
        "ice_cover_threshold": ICE_COVER_THRESHOLD,
        "bootstrap": {"replicates": n_boot, "seed": seed, "level": 0.95, "cells": int(ctx.cells.size)},
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
            "miz_area_km2": {"mean": float(ref_miz.mean()), "std": float(ref_miz.std())},
            "miz_area_km2_values": ref_miz.tolist(),
            "plateau_shares": shares_from_counts(stream.plateaus, int(ctx.ocean.sum()) * num_states),
            **reference_entry(stream),
        },
        "floor": None,
        "models": {},
        "reconstructions": {},
    }
    scores = {}
    for model in models:
        result["models"][model.name], scores[model.name] = score_source(model, stream, draws)
    if floor is not None:
        result["floor"], floor_scores = score_source(floor, stream, draws)
    memorization = memorization_entries(sources, tests, str(data), floor)
    result["reference"]["consistency"] = reference_consistency(tests)
    for source in sources:
        entry = result["floor"] if source is floor else result["models"][source.name]
        entry["consistency"] = consistency_entry(source, n_boot, seed)
        entry["memorization"] = memorization[source.name] if memorization else None
        entry["deformation"] = source_deformation(source.ocean_members, ctx.mask, deformation())
    result["reference"]["deformation"] = ref_deformation.result()
    for rec in recs:
        result["reconstructions"][rec.name] = rec.scores(ref_psd, wavelength)
    result["step_sweep"] = sweep_table(result["models"])
    evaluation = Evaluation(result, scores, floor_scores, wavelength)
    if findings is not None:
        roles = _roles(findings, models)
        result["findings_roles"] = roles.to_dict()
        result["findings"] = evaluation.decide(roles)

    def draw(folder: Path) -> dict[str, str]:
        if not figures:
            return {}
        return write_figures(folder, result, models, floor, recs, stream, ctx.mask, geometry, _label(ref, indices))

    evaluation.metrics = result = jsonable(result)
    write_report_folder(output, result, draw, report.write_report)
    return evaluation


@functools.wraps(run_evaluation, assigned=("__annotations__",))
def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`run_evaluation` (same parameters), returning the metrics dictionary written to ``metrics.json``."""
    return run_evaluation(*args, **kwargs).metrics


def _context(ref: ShardedDataset, data: str, dx_km: float | None, spectrum: str):
    """The scoring context of the reference grid, its spectrum box, geometry and wavelength spacing."""
    mask = (np.asarray(ref.static.mask) > 0.5).astype(np.float32)
    box = _spectrum_box(mask, data)
    geometry = reference_geometry(ref, data, dx_km or DEFAULT_DX_KM)
    dx_km = dx_km or geometry.mean_spacing_km(box)
    psd_of = functools.partial(isotropic_psd, mask=mask, box=box, dx_km=dx_km, estimator=spectrum)
    ctx = ScoringContext(
        data_desc=str(data),
        grid=(int(mask.shape[0]), int(mask.shape[1])),
        mask=mask,
        cell_area_km2=geometry.cell_area / 1e6,
        psd_of=psd_of,
        lat_lon=(np.asarray(ref.static.lat), np.asarray(ref.static.lon)),
        cells=cell_sample(int((mask > 0.5).sum())),
    )
    return ctx, box, geometry, dx_km


def reference_geometry(
    ref: ShardedDataset, data: str | os.PathLike, fallback_km: float = DEFAULT_DX_KM
) -> CellGeometry:
    """Cell areas and spacings of the data set's grid (:func:`grid_geometry`): stored or from lat/lon,
    else equal cells of ``fallback_km`` with a warning on stderr; unusable stored values: one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a repeated lat/lon point: zero spacing
        try:
            geometry = grid_geometry(ref.static, fallback_spacing_m=1000.0 * fallback_km)
        except ValueError as exc:
            raise UserError(f"{data}/static.h5: {exc}") from None
    if geometry.source.startswith("nominal"):
        print(
            f"evaluate: warning: {data}: no usable cell geometry in static.h5 or lat/lon; using equal cells "
            f"of {geometry.source.split(' ', 1)[1]}",
            file=sys.stderr,
            flush=True,
        )
    return geometry


def _load_models(
    sample_paths: Sequence[Path], ctx: ScoringContext, assumed: dict[str, str] | None
) -> list[GeneratedModel]:
    names = _unique_names([p.stem for p in sample_paths])
    models = [load_generated(p, n, ctx, assumed) for p, n in zip(sample_paths, names)]
    names = [m.name for m in models]
    # Files of one run at different step counts (a step sweep): name them by their steps.
    names = [
        f"{n} ({m.attrs['steps']} steps)" if names.count(n) > 1 and "steps" in m.attrs else n
        for n, m in zip(names, models)
    ]
    for model, name in zip(models, _unique_names(names)):
        model.name = name
    return models


def _roles(findings: FindingRoles, models: list[GeneratedModel]) -> Roles:
    """Model names of the three roles (the models read from the roles' files)."""
    by_file = {m.path.resolve(): m.name for m in models}
    return Roles(*(by_file[p.resolve()] for p in findings.all()))


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


def _label(ref: ShardedDataset, indices: np.ndarray) -> str:
    return f"test {np.datetime_as_string(np.asarray(ref.times)[int(indices[0])], unit='h')}"
