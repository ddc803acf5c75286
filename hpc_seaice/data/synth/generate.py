"""A synthetic neXtSIM-like Arctic: the data set the demo and the tests train on.

Real neXtSIM output cannot be downloaded here, so this generator puts synthetic sea ice on the
real geography: the grid is a north-polar stereographic grid like EPSG:3413 (``grid``) and the
land mask is the real coastline (``coastline``); the sea ice is synthetic, with a regional
climatology (``climate``), the 2010s seasonal cycle (``seasons``), a multifractal drift
(``cascade``), LKF slips and damage memory (``dynamics``), spectral AR(1) random fields
(``fields``), all stepped by ``model.SyntheticArctic`` (docs/synthetic_arctic.md compares its
statistics with observations). This module is the time axis, the streaming writer (samples
go to disk shard by shard, memory stays bounded at any grid and length), the summary and the
CLI. Everything random is drawn from generators seeded with ``--seed``, so a data set is
reproducible.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np

from hpc_seaice.data.format.manifest import DEFAULT_SPLITS, Layout, Manifest, in_split, read_manifest, write_manifest
from hpc_seaice.data.format.replace import dataset_output, verify_new
from hpc_seaice.data.format.shards import ShardWriter
from hpc_seaice.data.format.static import read_static, write_static
from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.data.format.verify import split_counts
from hpc_seaice.data.geo.grid import check_grid, grid_attrs
from hpc_seaice.data.stats.normalisation import RunningStats, add_pc1_std, safe_std
from hpc_seaice.data.synth.model import SyntheticArctic
from hpc_seaice.errors import UserError

DAY_S = 86400.0


# --------------------------------------------------------------------------------------------
# time axis


def parse_freq(freq: str) -> np.timedelta64:
    """``6h``, ``1D``, ``5D``, ``30min``, ``1W`` -> timedelta64[s] (pandas offset aliases)."""
    import pandas as pd

    try:
        step = pd.to_timedelta(freq)
    except (ValueError, TypeError):
        raise UserError(f"--freq: {freq!r} is not a time step such as 6h, 1D or 5D") from None
    seconds = int(step.total_seconds())
    if seconds <= 0:
        raise UserError(f"--freq: {freq!r} must be at least 1 s")
    return np.timedelta64(seconds, "s")


def _time_axis(start: str, end: str, freq: str) -> tuple[np.datetime64, np.timedelta64, int]:
    """First time stamp, step and number of steps (checked, nothing allocated)."""
    try:
        t0 = np.datetime64(start, "s")
        t1 = np.datetime64(end, "s")
    except ValueError:
        raise UserError(f"--start/--end: {start!r}, {end!r} are not ISO dates") from None
    if len(end.strip()) <= 10:
        t1 = t1 + np.timedelta64(1, "D") - np.timedelta64(1, "s")
    if t1 < t0:
        raise UserError(f"--end {end} is before --start {start}")
    step = parse_freq(freq)
    return t0, step, int((t1 - t0) // step) + 1


def synth_times(start: str, end: str, freq: str) -> np.ndarray:
    """Time stamps from ``start`` to ``end`` inclusive (a bare end date includes its whole day)."""
    t0, step, n = _time_axis(start, end, freq)
    return t0 + step * np.arange(n)


# --------------------------------------------------------------------------------------------
# data set generation


def _check_splits(times: np.ndarray, splits: dict[str, list[str]], start: str, end: str) -> None:
    for name, span in splits.items():
        if not in_split(times, span).any():
            raise UserError(
                f"--start {start} --end {end}: split {name} ({span[0]}..{span[1]}) would have no "
                f"samples; cover {min(s[0] for s in splits.values())}..{max(s[1] for s in splits.values())} "
                "(use --freq to make the set smaller)"
            )


def generate(
    out: str | os.PathLike,
    grid: int = 512,
    start: str = "2009-01-01",
    end: str = "2018-12-31",
    freq: str = "6h",
    seed: int = 0,
    shard_size: int = 256,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    splits: dict[str, list[str]] | None = None,
) -> Manifest:
    """Write a synthetic data set to ``out``: beside it first, swapped in when complete and checked."""
    check_grid(grid)
    if seed < 0:
        raise UserError(f"--seed: {seed} must be >= 0")
    splits = {k: list(v) for k, v in (splits or DEFAULT_SPLITS).items()}
    output = dataset_output(out, "data synth", overwrite)
    # The size first: a step of seconds over ten years would build a time axis of gigabytes.
    count = _time_axis(start, end, freq)[2]
    output.check(len(VARIABLES) * grid * grid * 4 * count, f"{count} samples")
    times = synth_times(start, end, freq)
    _check_splits(times, splits, start, end)
    with output.writing():  # the old data set stays until the new one is complete and checked
        manifest = _write(output.path, grid, seed, freq, times, splits, shard_size, progress, (start, end))
        output.commit(verify_new)
    return manifest


def _write(
    out: Path,
    grid: int,
    seed: int,
    freq: str,
    times: np.ndarray,
    splits: dict[str, list[str]],
    shard_size: int,
    progress: bool | None,
    span: tuple[str, str],
) -> Manifest:
    """The data set into ``out`` (the temporary folder): shards, static with statistics, manifest last."""
    from tqdm import tqdm

    start, end = span

    dt_days = float(parse_freq(freq).astype(np.float64)) / DAY_S
    model = SyntheticArctic(grid, seed, dt_days)
    ocean = model.geometry.ocean
    layout = Layout.fields((grid, grid))
    stats = RunningStats(layout.lower, layout.upper)
    train = in_split(times, splits["train"]) if "train" in splits else np.zeros(len(times), bool)
    writer = ShardWriter(out, layout, shard_size)
    # Samples generated per call: enough to amortise Python overhead on small grids, few
    # enough that the work arrays stay in cache (batched FFTs of large grids are memory bound).
    block_len = int(np.clip((1 << 16) // (grid * grid), 1, 64))
    with writer:
        bar = tqdm(
            total=len(times),
            desc=f"synth {grid}x{grid}",
            unit="sample",
            disable=progress is False,
            mininterval=0.1 if sys.stderr.isatty() else 15.0,  # a line every 15 s in logs
        )
        for lo in range(0, len(times), block_len):
            hi = min(len(times), lo + block_len)
            chunk = model.states(times[lo:hi])
            writer.write(chunk, times[lo:hi])
            sel = train[lo:hi]
            if sel.any():
                stats.update(chunk[sel], ocean)
            bar.update(hi - lo)
        bar.close()
    std = safe_std(stats.std, list(VARIABLES), str(out / "static.h5"))
    geo = model.geometry
    write_static(
        out,
        ocean,
        geo.lat,
        geo.lon,
        stats.mean,
        std,
        summary=stats.summary(),
        attrs={"stats_split": "train", **grid_attrs(grid)},
        cell_area=geo.area,
        dx=geo.dx,
        dy=geo.dy,
    )
    source = {
        "generator": "hpc_seaice.data.synth.generate",
        "seed": int(seed),
        "grid": int(grid),
        "start": start,
        "end": end,
        "freq": freq,
    }
    manifest = writer.build_manifest(splits=splits, source=source)
    write_manifest(out, manifest)
    add_pc1_std(out)  # the sampler's starting noise is sized from it
    return manifest


# --------------------------------------------------------------------------------------------
# summary


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def summarize(path: str | os.PathLike) -> str:
    """Human-readable summary: samples per split, ocean fraction, per-variable statistics, size."""
    root = Path(path)
    manifest = read_manifest(root)
    static = read_static(root)
    counts = split_counts(root, manifest)
    h, w = manifest.grid
    lines = [
        f"{root}: {manifest.kind} data set, {manifest.num_samples} samples in {len(manifest.shards)} shards, "
        f"grid {h} x {w}, {manifest.time_start} .. {manifest.time_end}",
        "  samples per split: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        f"  ocean fraction: {float(static.mask.mean()):.3f}   size on disk: {_dir_size(root) / 1e6:.1f} MB",
    ]
    if static.mean is None or static.std is None:
        lines.append("  no normalisation statistics (run hpc-seaice data stats)")
        return "\n".join(lines)
    s = static.summary
    split = static.attrs.get("stats_split", "train")
    lines.append(f"  statistics over ocean cells of the {split} split:")
    header = (
        f"  {'variable':<8}{'units':>7}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}{'at lower':>10}{'at upper':>10}"
    )
    lines.append(header)
    for k, name in enumerate(manifest.variables):
        row = f"  {name:<8}{manifest.units[k]:>7}{static.mean[k]:>10.4g}{static.std[k]:>10.4g}"
        if s:
            lo = f"{s['frac_lower'][k]:.3f}" if math.isfinite(manifest.lower[k]) else "-"
            hi = f"{s['frac_upper'][k]:.3f}" if math.isfinite(manifest.upper[k]) else "-"
            row += f"{s['min'][k]:>10.4g}{s['max'][k]:>10.4g}{lo:>10}{hi:>10}"
        lines.append(row)
    return "\n".join(lines)
