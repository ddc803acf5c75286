"""The report's tables of the scores added with the floor: aggregates, spectra of every variable, variogram.

Helpers shared with :mod:`.report` (number formatting, intervals, the floor-first source order)
live here so both modules format a number the same way. Every score is written
``estimate [low, high]``: the 95 % bootstrap interval (:mod:`.replicates`).
"""

from __future__ import annotations

from typing import Any

from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.evaluation.aggregates import AGGREGATES
from hpc_seaice.evaluation.aggregates import UNITS as AGGREGATE_UNITS
from hpc_seaice.evaluation.context import SPECTRAL_VARIABLES
from hpc_seaice.evaluation.floor import FLOOR_NAME
from hpc_seaice.evaluation.spectra import BANDS_KM


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e5):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def ci(entry: dict[str, Any], key: str, scale: float = 1.0) -> str:
    """``estimate [low, high]`` of one score of an entry (n/a where it has no interval)."""
    i = entry.get("intervals", {}).get(key)
    if i is None:
        return "n/a"
    vals = [None if i[k] is None else i[k] * scale for k in ("estimate", "low", "high")]
    return f"{fmt(vals[0], 3)} [{fmt(vals[1], 3)}, {fmt(vals[2], 3)}]"


def sources_of(metrics: dict[str, Any]) -> dict[str, Any]:
    """The floor (when there is one) and the models, in table order."""
    floor = metrics.get("floor")
    return ({FLOOR_NAME: floor} if floor else {}) | metrics.get("models", {})


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def floor_note(metrics: dict[str, Any]) -> list[str]:
    """What the floor row is, or why there is none."""
    floor = metrics.get("floor")
    boot = metrics.get("bootstrap", {})
    if not floor:
        return ["", "No floor: the data set has no validation split to score as a model (see stderr)."]
    attrs = floor.get("attrs", {})
    return [
        "",
        f"`{FLOOR_NAME}`: {floor['num_samples']} states of the validation split "
        f"({attrs.get('first_time', '?')} .. {attrs.get('last_time', '?')}, drawn with seed {attrs.get('seed', '?')}), "
        "scored exactly like a samples file: another year of the truth, the best any model can do with that many "
        f"samples. Intervals: {boot.get('replicates', '?')} bootstrap replicates (samples and test states resampled, "
        f"seed {boot.get('seed', '?')}); per-cell climatology and calibration intervals from {boot.get('cells', '?')} "
        "cells.",
    ]


def aggregate_table(metrics: dict[str, Any], sources: dict[str, Any]) -> list[str]:
    ref = metrics["reference"].get("aggregates")
    if not ref:
        return []
    lines = [
        "",
        "## Pan-Arctic aggregates",
        "",
        "Per state: extent (cells with sic >= 0.15), area (sum of sic x cell area), volume (sum of sit x cell area), "
        "MIZ area (0.15 <= sic <= 0.8). W1: Wasserstein-1 distance of the model's distribution to the test year's; "
        "CRPS: the model's values as an ensemble for each test state, mean over states (units of the aggregate).",
        "",
    ]
    rows = []
    for name in AGGREGATES:
        unit = AGGREGATE_UNITS[name]
        rows.append([f"{name} ({unit})", "test", fmt(ref[name]["mean"]), "", ""])
        for label, m in sources.items():
            if "aggregates" not in m:
                continue
            rows.append(
                [
                    f"{name} ({unit})",
                    label,
                    fmt(m["aggregates"][name]["mean"]),
                    ci(m, f"aggregate/{name}/wasserstein"),
                    ci(m, f"aggregate/{name}/crps"),
                ]
            )
    return lines + table(["aggregate", "source", "mean", "W1", "CRPS"], rows)


def spectra_table(sources: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Spectra of every variable, by band",
        "",
        "Mean log10(PSD / test PSD) over the rings of each wavelength band (0 = the test year's power, negative = "
        "smoother); speed = sqrt(siu^2 + siv^2).",
        "",
    ]
    heads = [f"{name.split('_', 1)[1].replace('_', '-')}" for name, _, _ in BANDS_KM]
    rows = [
        [var, label, *[ci(m, f"psd/{var}/{band}") for band, _, _ in BANDS_KM]]
        for var in SPECTRAL_VARIABLES
        for label, m in sources.items()
        if "intervals" in m
    ]
    return lines + table(["variable", "source", *heads], rows) if rows else []


def variogram_table(sources: dict[str, Any]) -> list[str]:
    rows = [
        [label, *[ci(m, f"variogram/{var}") for var in (*VARIABLES, "all")]]
        for label, m in sources.items()
        if "variogram/all" in m.get("intervals", {})
    ]
    if not rows:
        return []
    lines = [
        "",
        "## Spatial structure: variogram score",
        "",
        "Variogram score of order 0.5 on block means of the std-normalised fields (pairs of blocks up to 4 block "
        "widths apart, weights 1/distance); lower is better, a perfect model scores the floor's value, not 0.",
        "",
    ]
    return lines + table(["source", *VARIABLES, "all"], rows)


def checks_table(metrics: dict[str, Any], sources: dict[str, Any]) -> list[str]:
    """Memorisation flags and joint physical consistency per source."""
    rows = []
    for label, m in sources.items():
        memo, cons = m.get("memorization"), m.get("consistency") or {}
        if memo:
            flag = "**yes**" if memo["copies_training"] else "no"
            near = (
                f"{fmt(100 * memo['share_below'], 3)} % (p {fmt(memo['p_value'], 2)}); "
                f"median {fmt(memo['sample_nn_quantiles']['q50'], 3)} "
                f"vs test {fmt(memo['test_nn_quantiles']['q50'], 3)}"
            )
        else:
            flag, near = "n/a", "n/a"
        shares = [_share(cons.get(check)) for check in _CHECKS]
        rows.append([label, flag, near, *shares])
    if not rows:
        return []
    ref = metrics["reference"].get("consistency", {})
    rows.insert(0, ["test", "", "", *[fmt(100 * ref[c], 3) if c in ref else "n/a" for c in _CHECKS]])
    lines = [
        "",
        "## Memorisation and physical consistency",
        "",
        "Copies: more than 5 % of the samples are closer to a training state than the closest test state is "
        "(distances: RMS of the training-normalised fields over ocean cells in a block-mean projection, std units), "
        "and that share is improbable for a model exchangeable with the test states. Consistency: percentage of "
        "ocean cells with thickness > 1 cm where sic <= 0.001, sic > 0.1 where thickness <= 1 mm, and speed > "
        "1 cm/s without ice.",
        "",
    ]
    header = ["source", "copies training", "samples below threshold; nearest-train distance", *_CHECK_HEADS]
    return lines + table(header, rows)


_CHECKS = ("thickness_without_concentration", "concentration_without_thickness", "velocity_without_ice")
_CHECK_HEADS = ["sit without sic %", "sic without sit %", "motion without ice %"]


def _share(i: dict[str, float] | None) -> str:
    if not i:
        return "n/a"
    return f"{fmt(100 * i['estimate'], 3)} [{fmt(100 * i['low'], 3)}, {fmt(100 * i['high'], 3)}]"


def deformation_table(metrics: dict[str, Any], sources: dict[str, Any]) -> list[str]:
    """beta(q) of the deformation scaling and the grid-scale PDF's shares, test first."""
    rows = []
    for label, m in {"test": metrics["reference"], **sources}.items():
        d = m.get("deformation")
        if not d:
            continue
        sc, pdf = d.get("scaling", {}), d.get("pdf", {})
        beta = [fmt(b, 3) for b in sc["beta"]] if "beta" in sc else ["n/a"] * 3
        below = next(iter(pdf.get("share_below", {}).values()), None)
        above = pdf.get("share_above", {})
        rows.append(
            [label, *beta]
            + [fmt(None if below is None else 100 * below, 3), fmt(100 * above["0.1"] if "0.1" in above else None, 3)]
            + [fmt(pdf.get("tail_exponent"), 3)]
        )
    if not rows:
        return []
    lines = [
        "",
        "## Deformation",
        "",
        "Total deformation over the pack (sic >= 0.8): beta(q) = minus the log-log slope of the mean of the q-th "
        "power of the deformation of L x L boxes (velocity gradients averaged over boxes fully in the pack) against "
        "L (observed winter Arctic: about 0.2, 0.5, 1.0); grid-scale PDF: percentage of rigid cells (< 1e-4 / day), "
        "of cells above 0.1 / day, and the survival-tail exponent.",
        "",
    ]
    header = ["source", "beta(1)", "beta(2)", "beta(3)", "rigid %", "> 0.1/day %", "tail exponent"]
    return lines + table(header, rows)
