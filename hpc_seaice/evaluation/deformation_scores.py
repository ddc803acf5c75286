"""Deformation statistics of every scored source, accumulated over streamed states (:mod:`.deformation_stats`).

Per source (each model, the floor, the test states): the grid-scale PDF of total deformation
over the pack (shares of rigid and of strongly deforming cells, the survival-tail exponent) and
its spatial scaling ``<eps_L^q> ~ L^-beta(q)`` for q = 1, 2, 3 and box sides L = 1 .. 32 cells
(those that fit four times in the grid, at least up to 16), with the fitted ``beta(q)``.

The pack: ocean cells with ``sic >= 0.8``, the upper bound of the marginal ice zone (compact ice,
where deformation is localised in leads and ridges). States are taken a chunk at a time, so a
test year is never held: box moments are summed with their counts (the moment over all boxes of
all states is the count-weighted mean of the chunks'), and the PDF is computed from at most
:data:`PDF_CELLS` randomly chosen pack cells per state (fixed seed), a sample of the same
distribution, the same for every source.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import MIZ_RANGE
from hpc_seaice.data.geo.deformation import Spacing
from hpc_seaice.evaluation.context import CH
from hpc_seaice.evaluation.deformation_stats import (
    DEFAULT_QS,
    DEFAULT_SCALES,
    box_deformation,
    deformation_pdf,
    fit_scaling,
    pack_gradients,
    total_from_gradients,
)

PACK_SIC = MIZ_RANGE[1]
PDF_CELLS = 4096
CHUNK = 16


class DeformationAccumulator:
    """Box moments and a PDF sample of total deformation over a stream of states ``[K, C, H, W]``."""

    def __init__(self, grid: tuple[int, int], dx: Spacing, dy: Spacing, cell_km: float, seed: int = 0) -> None:
        self.dx, self.dy, self.cell_km = dx, dy, cell_km
        limit = max(16, min(grid) // 4)
        self.scales = np.array([s for s in DEFAULT_SCALES if s <= limit and s <= min(grid)])
        self.qs = np.asarray(DEFAULT_QS, dtype=np.float64)
        self.sums = np.zeros((self.qs.size, self.scales.size))
        self.counts = np.zeros(self.scales.size, np.int64)
        self.values: list[np.ndarray] = []
        self.rng = np.random.default_rng(seed)

    def add(self, fields: np.ndarray, mask: np.ndarray) -> None:
        for lo in range(0, len(fields), CHUNK):
            self._add(fields[lo : lo + CHUNK], np.asarray(mask) > 0.5)

    def _add(self, fields: np.ndarray, ocean: np.ndarray) -> None:
        u, v = fields[:, CH["siu"]], fields[:, CH["siv"]]
        pack = ocean & (np.asarray(fields[:, CH["sic"]], dtype=np.float32) >= np.float32(PACK_SIC))
        grads, clean = pack_gradients(u, v, pack, self.dx, self.dy)
        for j, side in enumerate(self.scales):
            eps = box_deformation(grads, clean, int(side))
            self.counts[j] += eps.size
            self.sums[:, j] += [np.sum(eps**q) for q in self.qs]
        cells = np.moveaxis(grads, 1, -1)
        for t in range(len(fields)):
            eps = total_from_gradients(cells[t][clean[t]])
            if eps.size > PDF_CELLS:
                eps = self.rng.choice(eps, PDF_CELLS, replace=False)
            self.values.append(eps)

    def result(self) -> dict[str, Any]:
        """``{"scaling": {...}, "pdf": {...}}``; a part that cannot be measured holds ``error``."""
        out: dict[str, Any] = {"pack": f"ocean cells with sic >= {PACK_SIC:g}"}
        used = self.counts > 0
        if used.sum() < 2:
            out["scaling"] = {"error": "fewer than two box sides have a box fully in the pack"}
        else:
            scales = self.scales[used]
            moments = self.sums[:, used] / self.counts[used]
            fit = fit_scaling(
                scales, self.qs, moments, self.counts[used], (int(scales[0]), int(scales[-1])), self.cell_km
            )
            out["scaling"] = fit.to_dict()
        values = np.concatenate(self.values) if self.values else np.zeros(0)
        try:
            out["pdf"] = deformation_pdf(values).to_dict()
        except ValueError as exc:
            out["pdf"] = {"error": str(exc)}
        return out


def source_deformation(members: list[np.ndarray], mask: np.ndarray, acc: DeformationAccumulator) -> dict[str, Any]:
    """:meth:`DeformationAccumulator.result` of an ensemble held as ocean cells (per variable ``[N, P]``)."""
    ocean = np.asarray(mask) > 0.5
    n = members[0].shape[0]
    for lo in range(0, n, CHUNK):
        k = min(CHUNK, n - lo)
        fields = np.zeros((k, len(members), *ocean.shape), np.float32)
        for c, m in enumerate(members):
            fields[:, c][:, ocean] = m[lo : lo + k]
        acc.add(fields, mask)
    return acc.result()
