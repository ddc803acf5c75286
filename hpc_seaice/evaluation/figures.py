"""The evaluation's figures, drawn from its metrics and the few arrays metrics.json does not keep.

Split from :mod:`hpc_seaice.evaluation.evaluate` so that the scoring pass and the drawing stay
apart: maps (with per-cell spacings for the deformation panel), overlaid thickness spectra,
the calibration curves and the MIZ-area histograms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import ICE_COVER_THRESHOLD
from hpc_seaice.data.geo.cell_geometry import CellGeometry
from hpc_seaice.evaluation import plots


def write_figures(
    out: Path,
    result: dict[str, Any],
    models: list[Any],
    recs: list[Any],
    ref_example: np.ndarray,
    mask: np.ndarray,
    geometry: CellGeometry,
    channels: dict[str, int],
    ref_label: str = "test",
) -> dict[str, str]:
    """Write the PNGs into ``out``; returns ``{figure key: file name}``."""
    figures: dict[str, str] = {}
    rows = [(ref_label, ref_example)]
    rows += [(f"{m.name} (sample 0)", m.example.astype(np.float64)) for m in models]
    rows += [(r.name, r.example) for r in recs if r.example is not None]
    plots.plot_maps(out / "maps.png", rows, mask, geometry.dx, geometry.dy, channels)
    figures["maps"] = "maps.png"

    wavelength = np.asarray(result["spectrum"]["wavelength_km"])
    curves = [("test", np.asarray(result["spectrum"]["test_psd"]), plots.REFERENCE_COLOUR, "-")]
    for i, m in enumerate(models):
        curves.append((m.name, m.psd_sit, plots.model_colour(i), "-"))
    for j, r in enumerate(recs):
        psd = np.asarray(result["reconstructions"][r.name]["psd_sit"])
        curves.append((r.name, psd, plots.model_colour(len(models) + j), "--"))
    plots.plot_spectra(out / "spectra_sit.png", wavelength, curves, title="thickness, central Arctic")
    figures["spectra"] = "spectra_sit.png"

    if models:
        cal_curves = []
        for i, m in enumerate(models):
            cal = result["models"][m.name]["cover_calibration"]
            mean_test = np.array(cal["mean_test"], dtype=float)
            cal_curves.append((m.name, mean_test, np.array(cal["mean_generated"], dtype=float), plots.model_colour(i)))
        plots.plot_calibration(out / "calibration.png", cal_curves, ICE_COVER_THRESHOLD)
        figures["calibration"] = "calibration.png"
        plots.plot_miz_histogram(
            out / "miz_area.png",
            np.asarray(result["reference"]["miz_area_km2_values"]),
            [(m.name, m.miz_km2, plots.model_colour(i)) for i, m in enumerate(models)],
        )
        figures["miz_area"] = "miz_area.png"
    return figures
