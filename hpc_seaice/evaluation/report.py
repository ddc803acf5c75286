"""`report.md`: the evaluation's metrics as Markdown tables with the figures linked.

Built only from the ``metrics.json`` dictionary, so a report can be regenerated (or several
evaluations merged) without touching the data. All models are in one table per kind of score,
as in the paper's comparison of the data-space model with the Gaussian and censored LDMs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpc_seaice.data.variables import UNITS

FIGURE_TITLES = {
    "maps": "Thickness, concentration, speed and total deformation (test state vs first sample)",
    "spectra": "Isotropic power spectral density of thickness over the central Arctic",
    "calibration": "Ice-cover probability: generated vs test, per 5 % bin of the test probability",
    "miz_area": "Marginal-ice-zone area distributions",
}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e5):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_report(metrics: dict[str, Any]) -> str:
    """The Markdown text of the report."""
    variables = metrics["variables"]
    models = metrics.get("models", {})
    recs = metrics.get("reconstructions", {})
    box = metrics["spectrum"]["box"]
    lines = [
        "# hpc-seaice evaluation",
        "",
        f"Reference: `{metrics['data']}`, split `{metrics['split']}`, {metrics['num_states']} states, "
        f"grid {metrics['grid'][0]}x{metrics['grid'][1]} at {metrics['dx_km']:g} km. All spatial means are "
        "over ocean cells.",
        "",
    ]
    if models:
        lines += ["## Models", ""]
        lines += _table(
            ["model", "file", "samples", "out-of-bounds from"],
            [[name, f"`{m['file']}`", str(m["num_samples"]), m["out_of_bounds_source"]] for name, m in models.items()],
        )
        lines += [
            "",
            "## Per-variable scores",
            "",
            "CRPS: the generated ensemble scored against every test state (standard estimator; fair "
            "estimator in metrics.json). Mean/std RMSE and bias: the generated mean and standard-deviation "
            "fields against the test climatology. OOB: percentage of ocean values outside the physical "
            "bounds (before clipping when the file stores `<var>_raw`).",
            "",
        ]
        rows = []
        for var in variables:
            for name, m in models.items():
                s = m["variables"][var]
                oob = s["out_of_bounds"]
                rows.append(
                    [
                        f"{var} ({UNITS[var]})",
                        name,
                        _fmt(s["crps"]),
                        _fmt(s["mean_rmse"]),
                        _fmt(s["mean_bias"]),
                        _fmt(s["std_rmse"]),
                        _fmt(s["std_bias"]),
                        "n/a" if oob is None else f"{100 * oob:.3g}",
                    ]
                )
        lines += _table(["variable", "model", "CRPS", "mean RMSE", "mean bias", "std RMSE", "std bias", "OOB %"], rows)
        ref_miz = metrics["reference"]["miz_area_km2"]
        lines += [
            "",
            "## Field-level scores",
            "",
            "PSD log-ratio: mean over wavenumbers of log10(PSD / test PSD) of thickness in the central-"
            f"Arctic box y {box['y0']}:{box['y1']}, x {box['x0']}:{box['x1']} (0 = same energy, negative = "
            "smoother than the test set). Calibration error: cell-weighted mean |generated - test| ice-cover "
            "probability over the 5 % bins. MIZ area (0.15 <= sic <= 0.8) in 10^3 km^2; W1: Wasserstein "
            f"distance to the test distribution (test: {_fmt(ref_miz['mean'] / 1e3)} +- "
            f"{_fmt(ref_miz['std'] / 1e3)}).",
            "",
        ]
        rows = []
        for name, m in models.items():
            miz = m["miz_area_km2"]
            w1 = m["miz_area_wasserstein_km2"]
            rows.append(
                [
                    name,
                    _fmt(m["psd_sit_log10_ratio"]),
                    _fmt(m["cover_calibration"]["error"]),
                    f"{_fmt(miz['mean'] / 1e3)} +- {_fmt(miz['std'] / 1e3)}",
                    "n/a" if w1 is None else _fmt(w1 / 1e3),
                ]
            )
        lines += _table(["model", "PSD log-ratio", "calibration error", "MIZ area", "MIZ W1"], rows)
    if recs:
        lines += [
            "",
            "## Autoencoder reconstructions",
            "",
            "Deterministic reconstruction (encoder mean, clamped decoder mean) of every test state.",
            "",
        ]
        header = ["run", "step"] + [f"RMSE {v} ({UNITS[v]})" for v in variables] + ["PSD log-ratio"]
        rows = [
            [name, str(r["step"])]
            + [_fmt(r["variables"][v]["rmse"]) for v in variables]
            + [_fmt(r["psd_sit_log10_ratio"])]
            for name, r in recs.items()
        ]
        lines += _table(header, rows)
    figures = metrics.get("figures", {})
    if figures:
        lines += ["", "## Figures", ""]
        for key, rel in figures.items():
            title = FIGURE_TITLES.get(key, key)
            lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(path: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write :func:`render_report` to ``path`` (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(metrics))
    tmp.replace(path)
    return path
