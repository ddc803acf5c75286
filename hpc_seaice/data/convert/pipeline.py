"""Convert neXtSIM output (NetCDF or zarr, read with xarray) into a sharded data set.

Conventions (the authors' pipeline, docs/science.md §1): land and invalid cells are NaN in the
model output; a cell is **ocean if ``sit`` is finite at every time step of the inputs** (the
first mapped variable; checked in a first pass over ``sit`` alone); every other NaN inside the
ocean is an error, never silently zeroed. Land is stored as 0. A crop ``y0:y1,x0:x1`` selects
the target grid, e.g. ``91:603,8:520`` gives the paper's 512 x 512 from the 603 x 528 moorings.

Inputs are checked one by one, then read together through ``xarray.open_mfdataset`` (dask; h5netcdf
for NetCDF, zarr for zarr stores) in time blocks of about 64 MB, so memory is bounded whatever the
archive size (:mod:`hpc_seaice.data.convert.inputs`); files are ordered by their first time stamp
and must not overlap. Dimensions, lat/lon and calendars are mapped by :mod:`hpc_seaice.data.convert.layout`;
the set is written beside ``--out`` and swapped in only when complete and checked
(:mod:`hpc_seaice.outputs`, :mod:`hpc_seaice.data.format.replace`).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hpc_seaice.data.blocks import iter_blocks
from hpc_seaice.data.convert.inputs import Inputs, open_inputs
from hpc_seaice.data.convert.layout import LAT_NAMES, LON_NAMES, coordinate
from hpc_seaice.data.format.manifest import (
    DEFAULT_SPLITS,
    Layout,
    Manifest,
    in_split,
    split_bounds,
    to_iso,
    write_manifest,
)
from hpc_seaice.data.format.replace import dataset_output, verify_new
from hpc_seaice.data.format.shards import ShardWriter
from hpc_seaice.data.format.static import write_static
from hpc_seaice.data.format.units import parse_assume_units
from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.data.geo.grid import polar_lat_lon
from hpc_seaice.data.stats.normalisation import RunningStats, add_pc1_std, safe_std
from hpc_seaice.errors import UserError
from hpc_seaice.outputs import Output

# Values this far outside a physical bound are rounding (clipped); further out they are an error.
BOUND_TOLERANCE = 1e-4


def parse_crop(crop: str | None, shape: tuple[int, int]) -> tuple[slice, slice]:
    """``"y0:y1,x0:x1"`` (empty = whole grid) -> slices inside ``shape``."""
    if not crop:
        return slice(0, shape[0]), slice(0, shape[1])
    try:
        parts = [p.split(":") for p in crop.split(",")]
        if len(parts) != 2 or any(len(p) != 2 for p in parts):
            raise ValueError
        bounds = [(int(a) if a else 0, int(b) if b else n) for (a, b), n in zip(parts, shape)]
    except ValueError:
        raise UserError(f"--crop: {crop!r} is not y0:y1,x0:x1") from None
    for (lo, hi), n, axis in zip(bounds, shape, "yx"):
        if hi < 0:
            hi += n
        if not 0 <= lo < hi <= n:
            raise UserError(f"--crop: {crop!r} is outside the {axis} extent 0:{n} of the inputs")
    return slice(*bounds[0]), slice(*bounds[1])


def _warn_intermittent(inputs: Inputs, name: str, cells: np.ndarray, first_nan: np.ndarray, ocean: int) -> None:
    """Say how many cells are NaN in some time steps but not all (a gap in the data, not a coast):
    they become land in every step, as the mask is fixed; the first such step and its file are named."""
    if not cells.any():
        return
    i = int(first_nan[cells].min())
    print(
        f"hpc-seaice data convert: warning: {int(cells.sum())} cells (against {ocean} ocean cells) have "
        f"{name!r} finite in some time steps and NaN in others, e.g. NaN at {to_iso(inputs.times[i])} in "
        f"{inputs.path_at(i)}; they are land in the converted set (the land mask is fixed over time)",
        file=sys.stderr,
        flush=True,
    )


def parse_splits(text: str | None) -> dict[str, list[str]]:
    """``"train=2009-01-01..2016-12-31,validation=...,test=..."`` -> split dict."""
    if not text:
        return {k: list(v) for k, v in DEFAULT_SPLITS.items()}
    splits: dict[str, list[str]] = {}
    for item in text.split(","):
        name, _, span = item.partition("=")
        start, sep, end = span.partition("..")
        if not name or not sep or not start or not end:
            raise UserError(f"--splits: {item!r} is not NAME=START..END")
        split_bounds([start, end], f"--splits {name}")
        splits[name.strip()] = [start.strip(), end.strip()]
    if "train" not in splits:
        raise UserError("--splits: a 'train' split is needed for the normalisation statistics")
    spans = sorted((split_bounds(span), name) for name, span in splits.items())
    for ((_, hi), first), ((lo, _), second) in zip(spans, spans[1:]):
        if lo < hi:  # a sample in both would train and evaluate at once
            raise UserError(f"--splits: {first} {splits[first]} and {second} {splits[second]} overlap")
    return splits


def convert(
    inputs: Sequence[str],
    out: str | os.PathLike,
    variables: Sequence[str] = VARIABLES,
    crop: str | None = None,
    shard_size: int = 256,
    *,
    overwrite: bool = False,
    splits: dict[str, list[str]] | None = None,
    progress: bool | None = None,
    assume_units: str | None = None,
) -> Manifest:
    """Convert NetCDF/zarr ``inputs`` into a sharded data set at ``out`` (with statistics).

    ``variables`` are the source names of ``sit, sic, damage, siu, siv``, in this order. Each
    variable's ``units`` are read and converted to the project's; ``assume_units``
    (``--assume-units``: ``sit=cm,sic=%``, or ``project``) states them instead.
    """

    names = list(variables)
    if len(names) != len(VARIABLES):
        raise UserError(f"--variables: give {len(VARIABLES)} names for {','.join(VARIABLES)}, got {len(names)}")
    splits = splits or {k: list(v) for k, v in DEFAULT_SPLITS.items()}
    assumed = parse_assume_units(assume_units)
    given = [("input", path) for path in inputs if Path(path).exists()]
    output = dataset_output(out, "data convert", overwrite, given).check()  # before any work
    inputs = open_inputs(inputs, names, assumed=assumed)
    try:
        return _convert_inputs(inputs, output, names, crop, shard_size, splits, progress)
    finally:
        inputs.close()


def _convert_inputs(
    inputs: Inputs,
    output: Output,
    names: list[str],
    crop: str | None,
    shard_size: int,
    splits: dict[str, list[str]],
    progress: bool | None,
) -> Manifest:
    from tqdm import tqdm

    first = inputs.files[0].path
    ysl, xsl = parse_crop(crop, inputs.grid)
    grid = (ysl.stop - ysl.start, xsl.stop - xsl.start)
    times = inputs.times
    for name, span in splits.items():
        if not in_split(times, span).any():
            raise UserError(
                f"{first}: inputs cover {to_iso(times[0])}..{to_iso(times[-1])}, split {name} "
                f"({span[0]}..{span[1]}) would be empty; set the splits with --splits"
            )
    disable = None if progress is None else not progress
    output.inputs += [("input", f.path) for f in inputs.files]
    output.check(len(VARIABLES) * grid[0] * grid[1] * 4 * len(times), f"{len(times)} samples")

    # Pass 1: the mask, from sit alone.
    ocean, ever = np.ones(grid, bool), np.zeros(grid, bool)
    first_nan = np.full(grid, len(times))  # per cell, the first time step where it is NaN
    bar = tqdm(total=len(times), desc="mask", unit="sample", disable=disable)
    for tsl in iter_blocks(len(times), grid[0] * grid[1] * 4):
        finite = np.isfinite(inputs.read(names[:1], tsl, ysl, xsl)[:, 0])
        empty = ~finite.any(axis=(1, 2))  # one step wipes out the mask: name its file, as for any bad value
        if empty.any():
            i = tsl.start + int(np.argmax(empty))
            raise UserError(f"{inputs.path_at(i)}: {names[0]!r} is NaN everywhere at {to_iso(times[i])}; no ocean cell")
        all_finite = finite.all(axis=0)
        first_nan = np.where(ocean & ~all_finite, tsl.start + np.argmax(~finite, axis=0), first_nan)
        ocean &= all_finite
        ever |= finite.any(axis=0)
        bar.update(tsl.stop - tsl.start)
    bar.close()
    if not ocean.any():
        raise UserError(f"{first}: no cell where {names[0]!r} is finite at all {len(times)} time steps; no ocean cell")
    _warn_intermittent(inputs, names[0], ever & ~ocean, first_nan, int(ocean.sum()))

    default_lat, default_lon = polar_lat_lon(*grid)
    _, y_dim, x_dim = inputs.dims
    lat = coordinate(first, inputs.ds, LAT_NAMES, y_dim, x_dim, inputs.grid)
    lon = coordinate(first, inputs.ds, LON_NAMES, y_dim, x_dim, inputs.grid)
    lat = default_lat if lat is None else np.where(np.isfinite(lat[ysl, xsl]), lat[ysl, xsl], default_lat)
    lon = default_lon if lon is None else np.where(np.isfinite(lon[ysl, xsl]), lon[ysl, xsl], default_lon)

    with output.writing():  # the old data set stays until the new one is complete and checked
        static = (ocean, lat, lon)
        manifest = _write(
            inputs, output.path, names, crop, splits, static, (ysl, xsl), shard_size, disable, output.target
        )
        output.commit(verify_new)
    return manifest


def _write(
    inputs: Inputs,
    out: Path,
    names: list[str],
    crop: str | None,
    splits: dict[str, list[str]],
    static: tuple[np.ndarray, np.ndarray, np.ndarray],
    window: tuple[slice, slice],
    shard_size: int,
    disable: bool | None,
    target: Path,
) -> Manifest:
    """Pass 2: write the shards, statistics, static file (mask, lat, lon) and manifest into ``out``
    (the staging folder that becomes ``target``, the name that messages give)."""
    from tqdm import tqdm

    ocean, lat, lon = static
    ysl, xsl = window
    grid = ocean.shape
    c = len(VARIABLES)
    sample_bytes = c * grid[0] * grid[1] * 4
    layout = Layout.fields(grid)
    lower, upper = np.array(layout.lower), np.array(layout.upper)
    stats = RunningStats(lower, upper)
    land = ~ocean
    writer = ShardWriter(out, layout, shard_size)
    times = inputs.times
    train = in_split(times, splits["train"])
    with writer:
        bar = tqdm(total=len(times), desc="convert", unit="sample", disable=disable)
        for tsl in iter_blocks(len(times), sample_bytes):
            block = inputs.read(names, tsl, ysl, xsl)
            _check_block(block, ocean, lower, upper, names, inputs, tsl)
            block[:, :, land] = 0.0
            writer.write(block, times[tsl])
            sel = train[tsl]
            if sel.any():
                stats.update(block[sel], ocean)
            bar.update(block.shape[0])
        bar.close()
    std = safe_std(stats.std, list(VARIABLES), str(target / "static.h5"))
    write_static(out, ocean, lat, lon, stats.mean, std, summary=stats.summary(), attrs={"stats_split": "train"})
    source = {
        "converter": "hpc_seaice.data.convert.pipeline",
        "inputs": [f.path for f in inputs.files],
        "variables": dict(zip(VARIABLES, names)),
        "crop": crop or "",
        "mask": f"ocean where {names[0]} is finite at all {len(times)} time steps",
    }
    manifest = writer.build_manifest(splits=splits, source=source)
    write_manifest(out, manifest)
    add_pc1_std(out)  # the sampler's starting noise is sized from it, as for a generated set
    return manifest


def _check_block(
    block: np.ndarray,
    ocean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    names: Sequence[str],
    inputs: Inputs,
    tsl: slice,
) -> None:
    """NaN in ocean cells is an error; bound excursions within tolerance are clipped, else an error."""
    for k, name in enumerate(names):
        x = block[:, k]
        xo = x[:, ocean]
        bad = ~np.isfinite(xo)
        if bad.any():
            i = tsl.start + int(np.nonzero(bad.any(axis=1))[0][0])
            raise UserError(
                f"{inputs.path_at(i)}: NaN in ocean cells of {name!r} at {to_iso(inputs.times[i])} "
                f"(ocean = cells where {names[0]!r} is finite at all times)"
            )
        lo, hi = float(lower[k]), float(upper[k])
        scale = 1.0 if not math.isfinite(hi - lo) else hi - lo
        tol = BOUND_TOLERANCE * scale
        below, above = xo < lo - tol, xo > hi + tol
        if below.any() or above.any():
            bad_rows = (below | above).any(axis=1)
            i = int(np.nonzero(bad_rows)[0][0])
            v, at = xo[i][(below | above)[i]][0], tsl.start + i
            raise UserError(
                f"{inputs.path_at(at)}: {name!r} value {v:g} at {to_iso(inputs.times[at])} is outside the physical "
                f"bounds [{lo:g}, {hi:g}] of {VARIABLES[k]}"
            )
        if math.isfinite(lo) or math.isfinite(hi):
            np.clip(x, lo, hi, out=x)
