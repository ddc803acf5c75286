"""Per-variable normalisation statistics over the ocean cells of the training split.

Mean and std are accumulated in one streaming pass with Welford's update generalised to blocks
(Chan et al. 1979): each block contributes (count, mean, M2) computed in float64, and two partial
results merge exactly, so shards (or ranks) can be reduced in any grouping and the answer does
not depend on how the data were cut. The same pass records min, max and the fraction of values
at the lower/upper physical bound (the plateaus), which the data set summary reports. A second,
subsampled pass stores the std of the leading principal component of the normalised split
(``pc1_std``, :mod:`hpc_seaice.data.stats.pca`), which sets the noise level sampling must start from.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpc_seaice.data.blocks import iter_blocks, read_block
from hpc_seaice.data.format.h5files import open_h5
from hpc_seaice.data.format.manifest import Manifest, in_split, manifest_path, read_manifest
from hpc_seaice.data.format.shards import check_shard_layout, shard_times
from hpc_seaice.data.format.static import GEOMETRY_KEYS, Static, read_static, static_path, write_static
from hpc_seaice.data.stats.pca import leading_pc_std
from hpc_seaice.errors import UserError


@dataclass
class RunningStats:
    """Mergeable per-channel count, mean, M2 (sum of squared deviations), min, max, bound hits."""

    lower: np.ndarray
    upper: np.ndarray
    count: int = 0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    min: np.ndarray = field(default_factory=lambda: np.zeros(0))
    max: np.ndarray = field(default_factory=lambda: np.zeros(0))
    at_lower: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    at_upper: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.lower = np.asarray(self.lower, dtype=np.float64)
        self.upper = np.asarray(self.upper, dtype=np.float64)
        c = self.lower.shape[0]
        if self.mean.shape != (c,):
            self.mean = np.zeros(c)
            self.m2 = np.zeros(c)
            self.min = np.full(c, np.inf)
            self.max = np.full(c, -np.inf)
            self.at_lower = np.zeros(c, np.int64)
            self.at_upper = np.zeros(c, np.int64)

    def update(self, block: np.ndarray, ocean: np.ndarray) -> None:
        """Add samples ``block`` [N, C, H, W], using only cells where ``ocean`` [H, W] is True."""
        if block.shape[0] == 0:
            return
        n = block.shape[0] * int(ocean.sum())
        if n == 0:
            return
        c = block.shape[1]
        mean_b = np.empty(c)
        m2_b = np.empty(c)
        for k in range(c):
            x = block[:, k][:, ocean].astype(np.float64)
            mean_b[k] = x.mean()
            m2_b[k] = np.square(x - mean_b[k]).sum()
            self.min[k] = min(self.min[k], float(x.min()))
            self.max[k] = max(self.max[k], float(x.max()))
            self.at_lower[k] += int(np.count_nonzero(x <= self.lower[k]))
            self.at_upper[k] += int(np.count_nonzero(x >= self.upper[k]))
        self._merge_moments(n, mean_b, m2_b)

    def _merge_moments(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (n_a * n_b / n)
        self.count = n

    def merge(self, other: RunningStats) -> RunningStats:
        """Fold ``other`` into this one (Chan's parallel formula); returns self."""
        if other.count:
            self.min = np.minimum(self.min, other.min)
            self.max = np.maximum(self.max, other.max)
            self.at_lower = self.at_lower + other.at_lower
            self.at_upper = self.at_upper + other.at_upper
            self._merge_moments(other.count, other.mean, other.m2)
        return self

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0) over all accumulated cells."""
        return np.sqrt(self.m2 / max(self.count, 1))

    def summary(self) -> dict[str, np.ndarray]:
        n = max(self.count, 1)
        return {
            "min": self.min,
            "max": self.max,
            "frac_lower": self.at_lower / n,
            "frac_upper": self.at_upper / n,
            "count": np.int64(self.count),
        }


def safe_std(std: np.ndarray, variables: list[str], where: str) -> np.ndarray:
    """A constant variable would divide by zero when normalising; use std 1 and say so."""
    std = np.asarray(std, dtype=np.float64).copy()
    flat = ~(std > 1e-12)
    for k in np.nonzero(flat)[0]:
        print(f"{where}: warning: {variables[k]} is constant on the train split; using std 1", file=sys.stderr)
    std[flat] = 1.0
    return std


def stored_geometry(static: Static) -> dict[str, np.ndarray]:
    """The grid-geometry datasets of a :class:`Static` that are present, to carry over on a rewrite."""
    return {k: getattr(static, k) for k in GEOMETRY_KEYS if getattr(static, k) is not None}


def _rewrite_stats(
    root: str | os.PathLike,
    static: Static,
    mean: np.ndarray,
    std: np.ndarray,
    summary: dict[str, np.ndarray] | None,
    attrs: dict[str, Any],
    pc1_std: float | None,
) -> None:
    """Rewrite ``static.h5`` with these statistics, keeping its mask, lat/lon and grid geometry.

    ``pc1_std`` joins ``attrs`` when it is finite; otherwise a value already there stays.
    """
    if pc1_std is not None and np.isfinite(pc1_std):
        attrs = {**attrs, "pc1_std": float(pc1_std)}
    write_static(
        root, static.mask, static.lat, static.lon, mean, std, summary=summary, attrs=attrs, **stored_geometry(static)
    )


def store_stats(
    root: str | os.PathLike, stats: RunningStats, split: str, *, std: np.ndarray, pc1_std: float | None = None
) -> None:
    """Write mean, ``std`` (made safe by :func:`safe_std`), the summary and ``pc1_std`` into ``static.h5``.

    The grid geometry (``cell_area``, ``dx``, ``dy``) already in the file is kept.
    """
    static = read_static(root)
    attrs = {**static.attrs, "stats_split": split}
    _rewrite_stats(root, static, stats.mean, std, stats.summary(), attrs, pc1_std)


def add_pc1_std(root: str | os.PathLike, split: str = "train") -> float:
    """Compute the leading-PC std of ``split`` with the stored mean/std and add it to ``static.h5``.

    For data sets whose statistics were written without it (the generator and the converter
    accumulate mean/std in their own pass); returns the value.
    """
    static = read_static(root)
    if static.mean is None or static.std is None:
        raise UserError(f"{static_path(root)}: no normalisation statistics; run hpc-seaice data stats {root}")
    pc1 = leading_pc_std(root, split, static.mean, static.std)
    _rewrite_stats(root, static, static.mean, static.std, static.summary, static.attrs, pc1)
    return pc1


def compute_stats(
    path: str | os.PathLike, split: str = "train", *, write: bool = True, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per variable over ocean cells of ``split``; stored in ``static.h5`` if ``write``."""
    from tqdm import tqdm

    root = manifest_path(path).parent
    manifest = read_manifest(path)
    if split not in manifest.splits:
        raise UserError(f"{manifest_path(path)}: no split named {split!r} (have {', '.join(manifest.splits)})")
    static = read_static(root)
    ocean = static.mask > 0.5
    if ocean.shape != tuple(manifest.grid):
        raise UserError(f"{static_path(root)}: mask shape {ocean.shape} != grid {tuple(manifest.grid)}")
    span = manifest.splits[split]
    stats = RunningStats(manifest.lower, manifest.upper)
    c, h, w = manifest.num_channels, *manifest.grid
    shards = tqdm(
        manifest.shards, desc=f"stats ({split})", unit="shard", disable=None if progress is None else not progress
    )
    for info in shards:
        where = str(root / info.file)
        with open_h5(root / info.file) as f:
            check_shard_layout(f, info, manifest, where)
            sel = np.nonzero(in_split(shard_times(f), span))[0]
            if sel.size == 0:
                continue
            lo, hi = int(sel[0]), int(sel[-1]) + 1  # a split is a time interval: contiguous in a shard
            if hi - lo != sel.size:
                raise UserError(f"{where}: time is not increasing (run hpc-seaice data verify)")
            for sl in iter_blocks(hi - lo, c * h * w * 4):
                block = read_block(f, "fields", slice(lo + sl.start, lo + sl.stop), where)
                _check_finite(block, ocean, manifest, where)
                stats.update(block, ocean)
    if stats.count == 0:
        raise UserError(
            f"{manifest_path(path)}: split {split} ({span[0]}..{span[1]}) has no samples; data cover "
            f"{manifest.time_start}..{manifest.time_end}"
        )
    std = safe_std(stats.std, manifest.variables, str(static_path(root)))
    if write:
        # The leading principal component sets how much noise sampling must start from.
        pc1 = leading_pc_std(root, split, stats.mean, std)
        store_stats(root, stats, split, std=std, pc1_std=pc1)
    return stats.mean, std


def _check_finite(block: np.ndarray, ocean: np.ndarray, manifest: Manifest, where: str) -> None:
    if np.isfinite(block[:, :, ocean]).all():
        return
    for k, name in enumerate(manifest.variables):
        if not np.isfinite(block[:, k][:, ocean]).all():
            raise UserError(f"{where}: NaN or infinite values in ocean cells of {name}")


def format_stats(manifest: Manifest, mean: np.ndarray, std: np.ndarray) -> str:
    lines = [f"{'variable':<10}{'units':>8}{'mean':>12}{'std':>12}"]
    for k, name in enumerate(manifest.variables):
        lines.append(f"{name:<10}{manifest.units[k]:>8}{mean[k]:>12.5g}{std[k]:>12.5g}")
    return "\n".join(lines)
