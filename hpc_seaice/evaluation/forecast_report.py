"""``report.md`` of a forecast evaluation, built only from its ``metrics.json`` dictionary.

One table per variable with a row per lead (the forecast's RMSE, CRPS, spread-skill ratio, the
baselines' RMSE and the RMSE skill against each), a table of the aggregates per lead (the
members' mean and spread against the truth and the baselines), the rank-histogram summaries,
the scores over all leads, and the figures. Numbers are formatted as in ``evaluate``'s report
(:func:`.report_tables.fmt`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import UNITS
from hpc_seaice.evaluation.report import figure_lines
from hpc_seaice.evaluation.report_tables import fmt, table
from hpc_seaice.fileio import atomic_write

FIGURE_TITLES = {
    "skill": "RMSE skill against persistence and the day-of-year climatology, by lead",
    "spread_skill": "RMSE of the ensemble mean and the corrected ensemble spread, by lead",
    "maps": "One rollout (member 0) against the truth at a few leads",
    "rank_histograms": "Rank histograms (pooled over ocean cells and leads)",
    "aggregates": "Extent, area, volume and MIZ area of every member against the truth and the baselines",
}


def _lead(lead: dict[str, Any]) -> str:
    return f"{fmt(lead['lead_hours'] / 24.0, 3)} d"


def _variable_table(metrics: dict[str, Any], var: str) -> list[str]:
    header = [
        "lead",
        "valid time",
        "RMSE",
        "CRPS",
        "spread/RMSE",
        "RMSE persist.",
        "RMSE clim.",
        "skill vs persist.",
        "skill vs clim.",
    ]
    rows = []
    for lead in metrics["leads"]:
        f = lead["forecast"][var]
        rows.append(
            [
                _lead(lead),
                lead["valid_time"],
                fmt(f["rmse"]),
                fmt(f["crps"]),
                fmt(f["spread_skill"], 3),
                fmt(lead["persistence"][var]["rmse"]),
                fmt(lead["climatology"][var]["rmse"]),
                fmt(lead["skill"]["persistence"][var]["rmse"], 3),
                fmt(lead["skill"]["climatology"][var]["rmse"], 3),
            ]
        )
    return ["", f"### {var} ({UNITS[var]})", "", *table(header, rows)]


def _aggregate_table(metrics: dict[str, Any]) -> list[str]:
    names = metrics["aggregates"]
    units = metrics["aggregate_units"]
    header = ["lead"] + [f"{n.replace('_', ' ')} ({units[n]}): truth / members / persist. / clim." for n in names]
    rows = []
    for lead in metrics["leads"]:
        cells = [_lead(lead)]
        for n in names:
            a = lead["aggregates"][n]
            cells.append(
                f"{fmt(a['truth'], 3)} / {fmt(a['mean'], 3)} +- {fmt(float(np.std(a['members'])), 2)} / "
                f"{fmt(a['persistence'], 3)} / {fmt(a['climatology'], 3)}"
            )
        rows.append(cells)
    return table(header, rows)


def render_forecast_report(metrics: dict[str, Any]) -> str:
    """The Markdown text of the report."""
    fc = metrics["forecast"]
    attrs = fc["attrs"]
    clim = metrics["climatology"]
    m = fc["members"]
    lines = [
        "# hpc-seaice forecast evaluation",
        "",
        f"Forecast `{fc['file']}`: run `{attrs.get('run')}`, seed {attrs.get('seed')}, {m} member(s), "
        f"{fc['num_leads']} lead(s) from {fc['reference_time']}. Truth: the data set `{metrics['data']}` at the "
        f"valid times (grid {metrics['grid'][0]}x{metrics['grid'][1]}; cell areas: {metrics['geometry']['source']}). "
        "Every score is a mean over ocean cells; land is excluded by the mask.",
        "",
        "Baselines, scored by the same code as one-member ensembles (their CRPS is the mean absolute "
        "error): persistence (the state at the reference time, held) and the day-of-year climatology of "
        f"the `{clim['split']}` split (per cell, the mean of the training states within +-{clim['window_days']} "
        f"days of year of the valid time, around the year end on a {clim['year_days']}-day year).",
    ]
    if metrics["valid_times_in_training_split"]:
        lines += [
            "",
            f"**Warning**: {metrics['valid_times_in_training_split']} valid time(s) lie in the training split: "
            "the climatology there includes the truth itself.",
        ]
    lines += [
        "",
        "## Scores by lead",
        "",
        "RMSE of the ensemble mean and CRPS (standard ensemble estimator) in the variable's units; spread/RMSE: "
        "sqrt((M+1)/M) x ensemble spread (square root of the mean unbiased ensemble variance) over the RMSE of "
        "the mean, 1 for a reliable ensemble, < 1 under-dispersive (n/a with one member or a zero RMSE); skill: "
        "1 - RMSE / RMSE of the baseline (1 perfect, 0 no better than the baseline; n/a where the baseline's "
        "RMSE is 0). CRPS skill scores are in metrics.json.",
    ]
    for var in metrics["variables"]:
        lines += _variable_table(metrics, var)
    lines += [
        "",
        "## Over all leads",
        "",
        "RMSE: the root of the mean squared error over leads; skill: of that RMSE against the baseline's; "
        "spread/RMSE: mean variance over mean squared error before the root.",
        "",
    ]
    summary = metrics["summary"]
    lines += table(
        ["variable", "RMSE", "mean CRPS", "spread/RMSE", "skill vs persist.", "skill vs clim."],
        [
            [
                f"{var} ({UNITS[var]})",
                fmt(s["rmse"]),
                fmt(s["crps"]),
                fmt(s["spread_skill"], 3),
                fmt(s["skill_persistence"], 3),
                fmt(s["skill_climatology"], 3),
            ]
            for var, s in summary.items()
        ],
    )
    lines += [
        "",
        "## Rank histograms",
        "",
        f"Rank of the truth among the {m} members at every ocean cell and lead (ties broken at random), "
        f"{m + 1} bins. RI: sum of |frequency - 1/(M+1)| (0 flat); outer: the two outer bins' share over a "
        "flat histogram's (> 1 U-shaped: under-dispersive or biased, < 1 dome: over-dispersive); mean rank: "
        "mean rank / M - 1/2 (> 0: the truth lies above the members). Descriptive: cells are correlated.",
        "",
    ]
    ranks = metrics["rank_histogram"]
    lines += table(
        ["variable", "RI", "outer", "mean rank", "frequencies"],
        [
            [
                var,
                fmt(h.get("reliability_index"), 3),
                fmt(h.get("outer_ratio"), 3),
                fmt(h.get("mean_rank"), 3),
                " ".join(fmt(f, 3) for f in h["frequencies"] or []),
            ]
            for var, h in ranks.items()
        ],
    )
    lines += [
        "",
        "## Aggregates by lead",
        "",
        "Per-cell areas over ocean cells; members: mean +- standard deviation over members. Each member's "
        "values, the members' CRPS and the baselines' errors are in metrics.json.",
        "",
        *_aggregate_table(metrics),
    ]
    lines += figure_lines(metrics.get("figures", {}), FIGURE_TITLES)
    return "\n".join(lines).rstrip() + "\n"


def write_forecast_report(path: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write :func:`render_forecast_report` to ``path`` (atomically)."""
    return atomic_write(path, render_forecast_report(metrics))
