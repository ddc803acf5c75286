"""The evaluation's figures, drawn from its metrics and the few arrays metrics.json does not keep.

Split from :mod:`hpc_seaice.evaluation.evaluate` so that the scoring pass and the drawing stay
apart: maps (with per-cell spacings for the deformation panel), overlaid spectra (thickness, and
every variable and speed in one grid), the calibration curves, the MIZ-area and aggregate
histograms. The floor is a grey line (or row) in every one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import ICE_COVER_THRESHOLD, UNITS
from hpc_seaice.data.geo.cell_geometry import CellGeometry
from hpc_seaice.evaluation import plots
from hpc_seaice.evaluation.aggregates import AGGREGATES
from hpc_seaice.evaluation.aggregates import UNITS as AGGREGATE_UNITS
from hpc_seaice.evaluation.context import CH, SPECTRAL_VARIABLES


def _sources(result: dict[str, Any], models: list[Any], floor: Any) -> list[tuple[str, dict[str, Any], str, Any]]:
    """``(name, metrics entry, colour, source)``: the floor first (grey), then the models."""
    out = [(floor.name, result["floor"], plots.FLOOR_COLOUR, floor)] if floor is not None else []
    return out + [(m.name, result["models"][m.name], plots.model_colour(i), m) for i, m in enumerate(models)]


def write_figures(
    out: Path,
    result: dict[str, Any],
    models: list[Any],
    floor: Any,
    recs: list[Any],
    stream: Any,
    mask: np.ndarray,
    geometry: CellGeometry,
    ref_label: str = "test",
) -> dict[str, str]:
    """Write the PNGs into ``out``; returns ``{figure key: file name}``."""
    figures: dict[str, str] = {}
    sources = _sources(result, models, floor)
    rows = [(ref_label, stream.example)]
    rows += [(f"{name} (sample 0)", src.example.astype(np.float64)) for name, _, _, src in sources]
    rows += [(r.name, r.example) for r in recs if r.example is not None]
    plots.plot_maps(out / "maps.png", rows, mask, geometry.dx, geometry.dy, CH)
    figures["maps"] = "maps.png"

    wavelength = np.asarray(result["spectrum"]["wavelength_km"])
    curves = [("test", np.asarray(result["spectrum"]["test_psd"]), plots.REFERENCE_COLOUR, "-")]
    curves += [(name, np.asarray(entry["psd_sit"]), colour, "-") for name, entry, colour, _ in sources]
    for j, r in enumerate(recs):
        psd = np.asarray(result["reconstructions"][r.name]["psd_sit"])
        curves.append((r.name, psd, plots.model_colour(len(models) + j), "--"))
    plots.plot_spectra(out / "spectra_sit.png", wavelength, curves, title="thickness, central Arctic")
    figures["spectra"] = "spectra_sit.png"

    panels = []
    for var in SPECTRAL_VARIABLES:
        var_curves = [("test", np.asarray(result["reference"]["spectra"][var]), plots.REFERENCE_COLOUR, "-")]
        var_curves += [(name, np.asarray(e["spectra"][var]["psd"]), colour, "-") for name, e, colour, _ in sources]
        panels.append((f"{var} ({UNITS.get(var, 'm/s')})", var_curves))
    plots.plot_spectra_grid(out / "spectra_all.png", wavelength, panels)
    figures["spectra_all"] = "spectra_all.png"

    if sources:
        cal_curves = []
        for name, entry, colour, _ in sources:
            cal = entry["cover_calibration"]
            mean_test = np.array(cal["mean_test"], dtype=float)
            cal_curves.append((name, mean_test, np.array(cal["mean_generated"], dtype=float), colour))
        plots.plot_calibration(out / "calibration.png", cal_curves, ICE_COVER_THRESHOLD)
        figures["calibration"] = "calibration.png"
        plots.plot_miz_histogram(
            out / "miz_area.png",
            np.asarray(result["reference"]["miz_area_km2_values"]),
            [(name, src.miz_km2, colour) for name, _, colour, src in sources],
        )
        figures["miz_area"] = "miz_area.png"
        reference = result["reference"]["aggregates"]
        agg_panels = [
            (
                f"{name.replace('_', ' ')} ({AGGREGATE_UNITS[name]})",
                np.asarray(reference[name]["values"]),
                [(label, src.aggregates[name], colour) for label, _, colour, src in sources],
            )
            for name in AGGREGATES
        ]
        plots.plot_aggregate_histograms(out / "aggregates.png", agg_panels)
        figures["aggregates"] = "aggregates.png"
        scaling = [("test", result["reference"]["deformation"]["scaling"], plots.REFERENCE_COLOUR)]
        scaling += [(name, entry["deformation"]["scaling"], colour) for name, entry, colour, _ in sources]
        plots.plot_deformation_scaling(out / "deformation_scaling.png", scaling)
        figures["deformation"] = "deformation_scaling.png"
    return figures
