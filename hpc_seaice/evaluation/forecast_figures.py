"""Figures of a forecast evaluation, drawn from its metrics and the few fields it keeps for the maps.

- ``skill.png``: the RMSE skill score against persistence and against the climatology by lead,
  one panel per variable;
- ``spread_skill.png``: the RMSE of the ensemble mean and the corrected spread
  ``sqrt((M+1)/M) x spread`` by lead (equal for a reliable ensemble), one panel per variable;
- ``forecast_maps.png``: member 0 (one rollout) against the truth at a few leads (first, middle,
  last), with the evaluation's map panels (:func:`.plots.plot_maps`: thickness, concentration,
  speed, total deformation; colour limits from the first truth row);
- ``rank_histograms.png``: the rank histogram of each variable against a flat one;
- ``aggregate_trajectories.png``: extent, area, volume and MIZ area of every member, the truth
  and both baselines by lead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import UNITS, VARIABLES
from hpc_seaice.data.geo.cell_geometry import CellGeometry
from hpc_seaice.evaluation import plots
from hpc_seaice.evaluation.context import CH
from hpc_seaice.evaluation.plots import plt

MAP_LEADS = 3  # leads shown in the maps: evenly spread, first and last included
BASELINE_STYLE = {"persistence": ("#d62728", "-"), "climatology": ("#2ca02c", "--")}


def lead_days(result: dict[str, Any]) -> np.ndarray:
    return np.array([lead["lead_hours"] / 24.0 for lead in result["leads"]])


def _values(result: dict[str, Any], *keys: str) -> np.ndarray:
    """One number per lead, ``lead[k0][k1]...``, NaN where None."""
    out = []
    for lead in result["leads"]:
        v: Any = lead
        for key in keys:
            v = v[key]
        out.append(np.nan if v is None else float(v))
    return np.array(out)


def _panels(n: int, width: float = 3.4, height: float = 2.8):
    cols = 2 if n == 4 else min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_skill(path: Path, result: dict[str, Any]) -> Path:
    days = lead_days(result)
    fig, axes = _panels(len(VARIABLES))
    for ax, var in zip(axes, VARIABLES):
        for base, (colour, style) in BASELINE_STYLE.items():
            ax.plot(days, _values(result, "skill", base, var, "rmse"), style, color=colour, marker=".", label=base)
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_title(f"{var}: RMSE skill", fontsize=10)
        ax.set_xlabel("lead (days)")
    axes[0].set_ylabel("1 - RMSE / RMSE baseline")
    axes[0].legend(fontsize=8, title="against", title_fontsize=8)
    return plots.save_figure(fig, path)


def plot_spread_skill(path: Path, result: dict[str, Any]) -> Path:
    days = lead_days(result)
    m = int(result["forecast"]["members"])
    fig, axes = _panels(len(VARIABLES))
    for ax, var in zip(axes, VARIABLES):
        ax.plot(days, _values(result, "forecast", var, "rmse"), "-", color="black", marker=".", label="RMSE of mean")
        spread = _values(result, "forecast", var, "spread") * np.sqrt((m + 1) / m)
        ax.plot(days, spread, "--", color=plots.model_colour(0), marker=".", label="sqrt((M+1)/M) spread")
        ax.set_title(f"{var} ({UNITS[var]})", fontsize=10)
        ax.set_xlabel("lead (days)")
        ax.set_ylim(bottom=0.0)
    axes[0].legend(fontsize=8)
    return plots.save_figure(fig, path)


def plot_rank_histograms(path: Path, result: dict[str, Any]) -> Path:
    fig, axes = _panels(len(VARIABLES))
    bins = int(result["forecast"]["members"]) + 1
    for ax, var in zip(axes, VARIABLES):
        h = result["rank_histogram"][var]
        if h.get("frequencies") is not None:
            ax.bar(np.arange(bins), h["frequencies"], color=plots.model_colour(0), width=0.85)
            ax.set_title(f"{var}: RI {h['reliability_index']:.3g}, outer {h['outer_ratio']:.3g}", fontsize=10)
        ax.axhline(1.0 / bins, color="black", lw=0.8, ls="--")
        ax.set_xlabel("rank of the truth")
    axes[0].set_ylabel("frequency")
    return plots.save_figure(fig, path)


def plot_aggregates(path: Path, result: dict[str, Any]) -> Path:
    days = lead_days(result)
    names = result["aggregates"]
    fig, axes = _panels(len(names), width=3.8)
    for ax, name in zip(axes, names):
        members = np.array([lead["aggregates"][name]["members"] for lead in result["leads"]])  # [T, M]
        for j in range(members.shape[1]):
            ax.plot(
                days, members[:, j], color=plots.model_colour(0), lw=0.7, alpha=0.6, label="members" if j == 0 else None
            )
        ax.plot(days, _values(result, "aggregates", name, "truth"), color=plots.REFERENCE_COLOUR, lw=1.6, label="truth")
        for base, (colour, style) in BASELINE_STYLE.items():
            ax.plot(days, _values(result, "aggregates", name, base), style, color=colour, lw=1.0, label=base)
        ax.set_title(f"{name.replace('_', ' ')} ({result['aggregate_units'][name]})", fontsize=10)
        ax.set_xlabel("lead (days)")
    axes[0].legend(fontsize=7)
    return plots.save_figure(fig, path)


def write_forecast_figures(
    out: Path,
    result: dict[str, Any],
    maps: Sequence[tuple[int, np.ndarray, np.ndarray]],
    mask: np.ndarray,
    geometry: CellGeometry,
) -> dict[str, str]:
    """Write the PNGs into ``out``; ``maps``: ``(lead index, truth [C, H, W], member 0 [C, H, W])``.
    Returns ``{figure key: file name}``."""
    figures: dict[str, str] = {}
    plot_skill(out / "skill.png", result)
    figures["skill"] = "skill.png"
    plot_spread_skill(out / "spread_skill.png", result)
    figures["spread_skill"] = "spread_skill.png"
    rows = []
    for k, truth, member in maps:
        day = f"+{result['leads'][k]['lead_hours'] / 24.0:g} d"
        rows += [(f"truth {day}", truth.astype(np.float64)), (f"member 0 {day}", member.astype(np.float64))]
    if rows:
        plots.plot_maps(out / "forecast_maps.png", rows, mask, geometry.dx, geometry.dy, CH)
        figures["maps"] = "forecast_maps.png"
    plot_rank_histograms(out / "rank_histograms.png", result)
    figures["rank_histograms"] = "rank_histograms.png"
    plot_aggregates(out / "aggregate_trajectories.png", result)
    figures["aggregates"] = "aggregate_trajectories.png"
    return figures
