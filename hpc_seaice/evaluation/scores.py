"""The scores of one ensemble (a model or the floor) against the reference stream, with their intervals.

:func:`score_source` writes the ``metrics.json`` entry of a source: the full-grid scores that
``evaluate`` always wrote (CRPS, mean/std RMSE and bias, bounds, plateaus, thickness spectrum,
calibration, MIZ area), the new ones (aggregates, spectra of every variable and of speed by band,
variogram score), and ``intervals``: for every score key its 95 % bootstrap interval. Keys:

- ``crps/VAR``, ``crps_fair/VAR``: ensemble CRPS (:mod:`.bootstrap`'s exact parts);
- ``mean_rmse/VAR``, ``mean_bias/VAR``, ``std_rmse/VAR``, ``std_bias/VAR``: per-cell climatology;
- ``psd/VAR/BAND`` and ``psd/VAR/all``: mean log10 PSD ratio to the reference over the band's
  rings (VAR one of the five variables or ``speed``);
- ``aggregate/NAME/{wasserstein,crps,mean_difference}`` (:mod:`.aggregates`);
- ``calibration/{error,unweighted_error,partial_error}`` (:mod:`.calibration`);
- ``variogram/VAR`` and ``variogram/all`` (:mod:`.spatial`).

:class:`SourceScores` keeps every score's replicates, so :mod:`.findings` can bootstrap any
difference or ratio of two sources (paired: the state draws are shared, :mod:`.replicates`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.evaluation import metrics as M
from hpc_seaice.evaluation import replicates as R
from hpc_seaice.evaluation.aggregates import AGGREGATES, UNITS
from hpc_seaice.evaluation.bootstrap import Interval
from hpc_seaice.evaluation.calibration import cover_calibration, ice_covered
from hpc_seaice.evaluation.context import CH, SPECTRAL_VARIABLES
from hpc_seaice.evaluation.generated import GeneratedModel
from hpc_seaice.evaluation.reference import ReferenceStream
from hpc_seaice.evaluation.spectra import band_log_ratios, band_rings, log_ratio

CLIMATOLOGY = ("mean_rmse", "mean_bias", "std_rmse", "std_bias")
ALL_RINGS = "all"


@dataclass
class SourceScores:
    """Every score of one source: its estimate and its bootstrap replicates (``[B]``)."""

    name: str
    num_samples: int
    estimates: dict[str, float] = field(default_factory=dict)
    reps: dict[str, np.ndarray] = field(default_factory=dict)
    centres: dict[str, float] = field(default_factory=dict)  # cell-sample estimates of moved intervals

    def add(self, key: str, estimate: float, reps: np.ndarray, centre: float | None = None) -> None:
        self.estimates[key] = float(estimate)
        self.reps[key] = np.asarray(reps, dtype=np.float64)
        if centre is not None:
            self.centres[key] = float(centre)

    def interval(self, key: str) -> Interval:
        return R.interval(self.estimates[key], self.reps[key], centre=self.centres.get(key))

    def intervals(self) -> dict[str, dict[str, float]]:
        return {key: self.interval(key).to_dict() for key in self.estimates}


def _both(fn, w: np.ndarray, v: np.ndarray, *args) -> tuple[Any, Any]:
    """``fn`` on all-ones weights (the full-set score) and on the replicates."""
    ones_w, ones_v = np.ones((1, w.shape[1])), np.ones((1, v.shape[1]))
    return fn(ones_w, ones_v, *args), fn(w, v, *args)


def _replicate_scores(
    source: GeneratedModel,
    ref: ReferenceStream,
    w: np.ndarray,
    v: np.ndarray,
    full: dict[str, float],
    out: SourceScores,
) -> None:
    for c, var in enumerate(VARIABLES):
        a, b = source.crps.obs_terms(c), source.crps.pairs[c]
        for key, fair in (("crps", False), ("crps_fair", True)):
            if fair and source.num_samples < 2:
                continue
            est, reps = _both(R.crps, w, v, a, b, fair)
            out.add(f"{key}/{var}", est[0], reps)
    rings = band_rings(ref.wavelength_km) | {ALL_RINGS: np.ones(ref.wavelength_km.size, bool)}
    for var in SPECTRAL_VARIABLES:
        psd, ref_psd = source.spectra[var], ref.spectra_array(var)
        for band, inside in rings.items():
            est, reps = _both(R.log_ratio_rings, w, v, psd, ref_psd, inside)
            out.add(f"psd/{var}/{band}", est[0], reps)
    for name in AGGREGATES:
        x, y = source.aggregates[name], ref.aggregate_array(name)
        for kind, fn in (
            ("wasserstein", R.wasserstein),
            ("crps", R.aggregate_crps),
            ("mean_difference", lambda w_, v_, x_, y_: R.wmean(w_, x_) - R.wmean(v_, y_)),
        ):
            est, reps = _both(fn, w, v, x, y)
            out.add(f"aggregate/{name}/{kind}", est[0], reps)
    cells = ref.cells_array()  # [T, C, S]
    for c, var in enumerate(VARIABLES):
        est, reps = _both(R.chunked, w, v, R.climatology_scores, source.cells[:, c].astype(np.float64), cells[:, c])
        for key in CLIMATOLOGY:
            out.add(f"{key}/{var}", full[f"{key}/{var}"], reps[key], est[key][0])
    gen_cover = ice_covered(source.cells[:, CH["sic"]]).astype(np.float64)
    ref_cover = ice_covered(cells[:, CH["sic"]]).astype(np.float64)
    est, reps = _both(R.chunked, w, v, R.calibration_scores, gen_cover, ref_cover)
    for key in ("error", "unweighted_error", "partial_error"):
        out.add(f"calibration/{key}", full[f"calibration/{key}"], reps[key], est[key][0])
    if source.variogram is not None:
        vs = source.variogram
        for c, var in [*enumerate(VARIABLES), (None, "all")]:
            est, reps = _both(R.variogram, w, v, vs, c)
            out.add(f"variogram/{var}", est[0], reps)


def score_source(source: GeneratedModel, ref: ReferenceStream, draws: R.Draws) -> tuple[dict[str, Any], SourceScores]:
    """The ``metrics.json`` entry of ``source`` and its :class:`SourceScores` (estimates and replicates)."""
    mask, num_states = ref.ctx.mask, ref.num_states
    ref_std = ref.moments.std
    per_var, full = {}, {}
    for c, var in enumerate(VARIABLES):
        values = {
            "crps": source.crps.score(c),
            "crps_fair": source.crps.score(c, fair=True) if source.num_samples > 1 else float("nan"),
            "mean_rmse": M.rmse(source.mean_field[c], ref.moments.mean[c], mask),
            "mean_bias": M.bias(source.mean_field[c], ref.moments.mean[c], mask),
            "std_rmse": M.rmse(source.std_field[c], ref_std[c], mask),
            "std_bias": M.bias(source.std_field[c], ref_std[c], mask),
            "out_of_bounds": source.out_of_bounds[c],
        }
        per_var[var] = values
        full.update({f"{key}/{var}": float(values[key]) for key in CLIMATOLOGY})
    calibration = cover_calibration(ref.cover_count / num_states, source.cover_probability, mask).to_dict()
    full.update({f"calibration/{k}": calibration[k] for k in ("error", "unweighted_error", "partial_error")})
    scores = SourceScores(source.name, source.num_samples)
    _replicate_scores(source, ref, draws.samples[source.name], draws.states, full, scores)
    wavelength = ref.wavelength_km
    ref_miz = np.asarray(ref.miz_km2)
    spectra = {}
    for var in SPECTRAL_VARIABLES:
        psd, ref_psd = source.spectra[var].mean(axis=0), ref.mean_psd(var)
        spectra[var] = {
            "psd": psd.tolist(),
            "log10_ratio": log_ratio(psd, ref_psd),
            "band_log10_ratio": band_log_ratios(psd, ref_psd, wavelength),
        }
    aggregates = {
        name: {
            "units": UNITS[name],
            "values": source.aggregates[name].tolist(),
            "mean": float(source.aggregates[name].mean()),
            **{
                kind: scores.estimates[f"aggregate/{name}/{kind}"]
                for kind in ("wasserstein", "crps", "mean_difference")
            },
        }
        for name in AGGREGATES
    }
    entry = {
        "file": str(source.path),
        "num_samples": source.num_samples,
        "attrs": source.attrs,
        "out_of_bounds_source": source.out_of_bounds_source,
        "variables": per_var,
        "psd_sit": spectra["sit"]["psd"],
        "psd_sit_log10_ratio": spectra["sit"]["log10_ratio"],
        "psd_sit_band_log10_ratio": spectra["sit"]["band_log10_ratio"],
        "spectra": spectra,
        "plateau_shares": source.plateau_shares,
        "cover_calibration": calibration,
        "miz_area_km2": _summary(source.miz_km2),
        "miz_area_km2_values": source.miz_km2.tolist(),
        "miz_area_wasserstein_km2": float(wasserstein_distance(source.miz_km2, ref_miz)),
        "aggregates": aggregates,
        "intervals": scores.intervals(),
    }
    if source.variogram is not None:
        entry["variogram"] = {var: scores.estimates[f"variogram/{var}"] for var in [*VARIABLES, "all"]}
    return entry, scores


def reference_entry(ref: ReferenceStream) -> dict[str, Any]:
    """The reference states' own summaries: aggregates (values and mean) and the spectra of every variable."""
    return {
        "aggregates": {
            name: {"units": UNITS[name], "values": ref.aggregates[name], "mean": float(np.mean(ref.aggregates[name]))}
            for name in AGGREGATES
        },
        "spectra": {var: ref.mean_psd(var).tolist() for var in SPECTRAL_VARIABLES},
    }


def _summary(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}
