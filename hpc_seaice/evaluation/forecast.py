"""``hpc-seaice evaluate --forecast f.nc --data DIR``: score an ensemble forecast lead by lead.

Independent of how the forecast was made: any file in the forecast format
(:mod:`hpc_seaice.data.format.forecast_file`) is scored against the data set's states at its
valid times (:mod:`.forecast_truth`), with persistence and the training split's day-of-year
climatology as baselines scored by the same code (:mod:`.forecast_scores`). One lead is in
memory at a time (``M x C x H x W`` of the forecast, the truth and the two baselines), the
climatology's day-of-year sums beside it.

Writes, like ``evaluate``'s other reports (:mod:`.output`: checked before the scoring, swapped
in whole at the end): ``metrics.json`` (keys in ``docs/forecast.md``), ``report.md`` (a table
per variable with a row per lead, the aggregates, the rank histograms) and the figures (skill by
lead, spread and error by lead, one rollout's maps against the truth, rank histograms, the
aggregates' trajectories).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm import tqdm

from hpc_seaice.data.blocks import evenly_spaced
from hpc_seaice.data.format.forecast_file import WHAT, lead_times, member_fields, read_forecast
from hpc_seaice.data.format.manifest import to_iso
from hpc_seaice.data.format.units import parse_assume_units
from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation.aggregates import AGGREGATES
from hpc_seaice.evaluation.aggregates import UNITS as AGGREGATE_UNITS
from hpc_seaice.evaluation.evaluate import open_reference, reference_geometry
from hpc_seaice.evaluation.forecast_figures import MAP_LEADS, write_forecast_figures
from hpc_seaice.evaluation.forecast_report import write_forecast_report
from hpc_seaice.evaluation.forecast_scores import (
    RankHistogram,
    lead_aggregates,
    pooled_spread_skill,
    score_ensemble,
    skill,
)
from hpc_seaice.evaluation.forecast_truth import (
    DEFAULT_WINDOW_DAYS,
    TRAIN_SPLIT,
    YEAR_DAYS,
    DayOfYearClimatology,
    in_training_split,
    time_indices,
    warn_training_overlap,
)
from hpc_seaice.evaluation.generated import check_same_grid
from hpc_seaice.evaluation.output import jsonable, report_output, write_report_folder
from hpc_seaice.outputs import Output

BASELINES: tuple[str, ...] = ("persistence", "climatology")
SCORED = ("rmse", "crps")  # the scores with a skill score against each baseline


def evaluate_forecast(
    forecast: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    climatology_window: int = DEFAULT_WINDOW_DAYS,
    assume_units: str | None = None,
    figures: bool = True,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Score the forecast file ``forecast`` against the data set ``data``; write the report to ``out``.

    ``climatology_window``: half-width in days of year of the climatology baseline's window.
    ``assume_units``: ``--assume-units`` for the forecast file's variables. ``progress``: progress
    bars on stderr (default: when stderr is a terminal, so that an error in a log is one line).
    Returns the ``metrics.json`` dictionary.
    """
    if not 0 <= climatology_window < YEAR_DAYS // 2:
        raise UserError(f"--climatology-window must be 0 to {YEAR_DAYS // 2 - 1} days, got {climatology_window}")
    assumed = parse_assume_units(assume_units)
    path, data = Path(forecast), str(data)
    output = report_output(out, [("--data", data), ("--forecast", path)])
    ds = read_forecast(path)
    try:
        shown = sys.stderr.isatty() if progress is None else progress
        return _evaluate(ds, path, data, output, climatology_window, assumed, figures, shown)
    finally:
        ds.close()


def _evaluate(
    ds: xr.Dataset,
    path: Path,
    data: str,
    output: Output,
    window: int,
    assumed: dict[str, str] | None,
    figures: bool,
    progress: bool,
) -> dict[str, Any]:
    truth = open_reference(data, None)
    static = truth.static
    check_same_grid(ds, path, WHAT, truth.grid, static.mask, (static.lat, static.lon), data)
    valid = np.asarray(ds["time"].values).astype("datetime64[s]")
    reference = np.datetime64(ds["forecast_reference_time"].values, "s")
    indices = time_indices(valid, truth, path, data, "valid time")
    (initial,) = time_indices(np.array([reference]), truth, path, data, "forecast_reference_time")
    overlap = in_training_split(valid, truth)
    warn_training_overlap(overlap, valid.size, data)
    mask = (static.mask > 0.5).astype(np.float32)
    ocean = mask > 0.5
    geometry = reference_geometry(truth, data)
    area_km2 = geometry.cell_area / 1e6
    climatology = DayOfYearClimatology(open_reference(data, TRAIN_SPLIT), valid, window, data, progress)

    members = ds.sizes["member"]
    persistence = np.where(ocean, truth.raw(int(initial)), 0.0).astype(np.float32)
    ranks = RankHistogram(members)
    map_leads = set(evenly_spaced(valid.size, MAP_LEADS).tolist())
    maps: list[tuple[int, np.ndarray, np.ndarray]] = []
    leads = []
    hours = lead_times(ds).astype(np.int64) / 3600.0
    for k in tqdm(range(valid.size), desc="forecast", unit="lead", disable=not progress):
        x = member_fields(ds, k, assumed)
        _check_finite(x, ocean, path, valid[k])
        y = np.where(ocean, truth.raw(int(indices[k])), 0.0).astype(np.float32)
        clim = climatology.mean(k)
        scored = {
            "forecast": score_ensemble(x, y, mask),
            "persistence": score_ensemble(persistence[None], y, mask),
            "climatology": score_ensemble(clim[None], y, mask),
        }
        ranks.add(x[:, :, ocean], y[:, ocean])
        leads.append(
            {
                "lead_hours": float(hours[k]),
                "valid_time": to_iso(valid[k]),
                **scored,
                "skill": {
                    base: {
                        var: {key: skill(scored["forecast"][var][key], scored[base][var][key]) for key in SCORED}
                        for var in VARIABLES
                    }
                    for base in BASELINES
                },
                "aggregates": lead_aggregates(x, y, {"persistence": persistence, "climatology": clim}, mask, area_km2),
                "climatology_states": climatology.states(k),
            }
        )
        if k in map_leads:
            maps.append((k, y, x[0]))

    result = {
        "kind": "forecast",
        "forecast": {
            "file": str(path),
            "attrs": dict(ds.attrs),  # numpy values made JSON below
            "members": members,
            "reference_time": to_iso(reference),
            "num_leads": int(valid.size),
        },
        "data": data,
        "grid": list(truth.grid),
        "geometry": {"source": geometry.source, "ocean_area_km2": float(area_km2[ocean].sum())},
        "variables": list(VARIABLES),
        "aggregate_units": dict(AGGREGATE_UNITS),
        "aggregates": list(AGGREGATES),
        "climatology": {"split": TRAIN_SPLIT, "window_days": window, "year_days": YEAR_DAYS},
        "valid_times_in_training_split": overlap,
        "leads": leads,
        "rank_histogram": ranks.summary(),
        "summary": _summary(leads, members),
    }

    def draw(folder: Path) -> dict[str, str]:
        if not figures:
            return {}
        return write_forecast_figures(folder, result, maps, mask, geometry)

    result = jsonable(result)
    return write_report_folder(output, result, draw, write_forecast_report)


def _summary(leads: list[dict[str, Any]], members: int) -> dict[str, dict[str, float | None]]:
    """Per variable over all leads: root-mean-square error, mean CRPS, the pooled spread-skill ratio
    and the skill of the pooled RMSE against each baseline's."""
    out = {}
    for var in VARIABLES:
        rmse = {src: [lead[src][var]["rmse"] for lead in leads] for src in ("forecast", *BASELINES)}
        pooled = {src: float(np.sqrt(np.mean(np.square(v)))) for src, v in rmse.items()}
        out[var] = {
            "rmse": pooled["forecast"],
            "crps": float(np.mean([lead["forecast"][var]["crps"] for lead in leads])),
            "spread_skill": pooled_spread_skill(
                [lead["forecast"][var]["spread"] for lead in leads], rmse["forecast"], members
            ),
            **{f"skill_{base}": skill(pooled["forecast"], pooled[base]) for base in BASELINES},
        }
    return out


def _check_finite(x: np.ndarray, ocean: np.ndarray, path: Path, when: np.datetime64) -> None:
    bad = ~np.isfinite(x[:, :, ocean]).all(axis=(0, 2))
    if bad.any():
        var = VARIABLES[int(np.argmax(bad))]
        raise UserError(f"forecast file {path}: NaN or infinite values of {var} in ocean cells at {to_iso(when)}")
