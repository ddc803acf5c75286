"""Ice-cover probability calibration (the paper's Fig. 4) and its summaries.

Ocean cells are put into bins of their reference (test) probability of being ice-covered; a
calibrated generator has, in every bin, a mean generated probability equal to the bin's mean
reference probability (the diagonal). Three summaries, because they answer different questions:

- ``error``: the cell-weighted mean |generated - test| over bins (an expected calibration
  error). Cells that are always ice (p = 1) or never ice (p = 0) are most of the ocean, so this
  number mostly says whether a model gets the pack and the open ocean right.
- ``unweighted_error``: the plain mean over the non-empty bins, every bin counting once, like
  the per-bin means of the figure; it is driven by the ice edge.
- ``partial_error`` (:func:`partial_cover_error`): mean |p_generated - p_test| over the cells
  with 0 < p_test < 1 only, the seasonal ice zone, per cell (no binning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import ICE_COVER_THRESHOLD


def ice_covered(sic: np.ndarray, threshold: float = ICE_COVER_THRESHOLD) -> np.ndarray:
    """``sic >= threshold``, compared in float32 (the stored precision; see :func:`metrics.miz_area`).

    Why: a reference state read as float64 and a sample read as float32 must put one stored value
    on the same side of the threshold.
    """
    return np.asarray(sic, dtype=np.float32) >= np.float32(threshold)


def sea_ice_cover_probability(sic: np.ndarray, threshold: float = ICE_COVER_THRESHOLD) -> np.ndarray:
    """Per-cell probability of being ice-covered (``sic >= threshold``): ``[N, H, W] -> [H, W]``."""
    return ice_covered(sic, threshold).mean(axis=0)


def _nan_to_none(x: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(x, dtype=np.float64)]


@dataclass
class CoverCalibration:
    """Generated vs reference ice-cover probability, grouped by the reference probability (empty bins NaN)."""

    bin_edges: np.ndarray  # [B + 1]
    mean_test: np.ndarray  # [B] mean reference probability of the cells in the bin
    mean_generated: np.ndarray  # [B] mean generated probability of the same cells
    counts: np.ndarray  # [B] number of ocean cells in the bin
    partial_error: float = float("nan")  # mean |p_gen - p_test| over cells with 0 < p_test < 1

    @property
    def bin_centers(self) -> np.ndarray:
        return 0.5 * (self.bin_edges[1:] + self.bin_edges[:-1])

    def _gaps(self) -> tuple[np.ndarray, np.ndarray]:
        used = self.counts > 0
        return np.abs(self.mean_generated[used] - self.mean_test[used]), self.counts[used]

    @property
    def error(self) -> float:
        """Cell-weighted mean |generated - reference| over bins (an expected calibration error)."""
        gap, counts = self._gaps()
        return float((gap * counts).sum() / counts.sum()) if counts.size else float("nan")

    @property
    def unweighted_error(self) -> float:
        """Mean |generated - reference| over the non-empty bins, each bin counting once."""
        gap, _ = self._gaps()
        return float(gap.mean()) if gap.size else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "bin_edges": self.bin_edges.tolist(),
            "mean_test": _nan_to_none(self.mean_test),
            "mean_generated": _nan_to_none(self.mean_generated),
            "counts": self.counts.astype(int).tolist(),
            "error": self.error,
            "unweighted_error": self.unweighted_error,
            "partial_error": self.partial_error,
        }


def partial_cover_error(p_test: np.ndarray, p_gen: np.ndarray, mask: np.ndarray) -> float:
    """Mean |p_gen - p_test| over ocean cells with 0 < p_test < 1 (NaN when there is none)."""
    ocean = np.asarray(mask) > 0.5
    pt = np.asarray(p_test, dtype=np.float64)
    sel = ocean & (pt > 0.0) & (pt < 1.0)
    if not sel.any():
        return float("nan")
    return float(np.abs(np.asarray(p_gen, dtype=np.float64)[sel] - pt[sel]).mean())


def cover_calibration(
    p_test: np.ndarray, p_gen: np.ndarray, mask: np.ndarray, bin_width: float = 0.05
) -> CoverCalibration:
    """Bin ocean cells by their reference ice-cover probability (bins of ``bin_width``).

    Bins are ``[0, w), [w, 2w), ..., [1 - w, 1]`` (the last one closed so p = 1 is counted).
    """
    num_bins = int(round(1.0 / bin_width))
    if num_bins < 1 or abs(num_bins * bin_width - 1.0) > 1e-9:
        raise ValueError(f"bin_width {bin_width} does not divide [0, 1]")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    ocean = np.asarray(mask) > 0.5
    pt = np.asarray(p_test, dtype=np.float64)[ocean]
    pg = np.asarray(p_gen, dtype=np.float64)[ocean]
    idx = np.clip(np.floor(pt * num_bins + 1e-9).astype(np.int64), 0, num_bins - 1)
    counts = np.bincount(idx, minlength=num_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_test = np.bincount(idx, weights=pt, minlength=num_bins) / counts
        mean_gen = np.bincount(idx, weights=pg, minlength=num_bins) / counts
    partial = partial_cover_error(p_test, p_gen, mask)
    return CoverCalibration(edges, mean_test, mean_gen, counts.astype(np.int64), partial)
