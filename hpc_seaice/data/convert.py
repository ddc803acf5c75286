"""Convert neXtSIM output (NetCDF or zarr, read with xarray) into a sharded data set.

Conventions (the authors' pipeline, docs/science.md §1): land and invalid cells are NaN in the
model output; a cell is **ocean if ``sit`` is finite at every time step of the inputs** (the
first mapped variable; checked in a first pass over ``sit`` alone); every other NaN inside the
ocean is an error, never silently zeroed. Land is stored as 0. A crop ``y0:y1,x0:x1`` selects
the target grid, e.g. ``91:603,8:520`` gives the paper's 512 x 512 from the 603 x 528 moorings.

Inputs are opened one by one with ``xarray.open_dataset`` (h5netcdf for NetCDF, zarr for zarr
stores) and read in time blocks of about 64 MB, so memory is bounded whatever the archive size.
``open_mfdataset`` would give the same concatenation but needs dask, which this project does not
depend on; files are ordered by their first time stamp and must not overlap. Dimensions, lat/lon
and calendars are mapped by :mod:`hpc_seaice.data.layout`; the set is written beside ``--out``
and swapped in only when complete and checked (:mod:`hpc_seaice.data.replace`).
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.grid import polar_lat_lon
from hpc_seaice.data.layout import coordinate, decode_times, map_dims
from hpc_seaice.data.manifest import DEFAULT_SPLITS, Manifest, in_split, split_bounds, to_iso, write_manifest
from hpc_seaice.data.replace import check_target, staging_dir, swap_in
from hpc_seaice.data.shards import fields_writer
from hpc_seaice.data.static import write_static
from hpc_seaice.data.stats import RunningStats, add_pc1_std, safe_std
from hpc_seaice.data.variables import BOUNDS, VARIABLES
from hpc_seaice.data.verify import iter_blocks
from hpc_seaice.errors import UserError

LAT_NAMES = ("lat", "latitude", "nav_lat", "nav_lat_grid_T")
LON_NAMES = ("lon", "longitude", "nav_lon", "nav_lon_grid_T")
# Values this far outside a physical bound are rounding (clipped); further out they are an error.
BOUND_TOLERANCE = 1e-4


@dataclass
class _Input:
    path: str
    ds: Any  # xarray.Dataset, opened lazily
    time_dim: str
    y_dim: str
    x_dim: str
    times: np.ndarray


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Paths and glob patterns -> existing paths (sorted within a pattern, duplicates dropped)."""
    paths: list[str] = []
    for pattern in inputs:
        if any(ch in pattern for ch in "*?["):
            found = sorted(glob.glob(pattern))
            if not found:
                raise UserError(f"{pattern}: no file matches")
        elif not os.path.exists(pattern):
            raise UserError(f"{pattern}: no such file or zarr store")
        else:
            found = [pattern]
        paths.extend(p for p in found if p not in paths)
    if not paths:
        raise UserError("no input files given")
    return paths


def _is_zarr(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and (
        p.suffix == ".zarr" or (p / ".zgroup").exists() or (p / "zarr.json").exists() or (p / ".zmetadata").exists()
    )


def open_input(path: str) -> Any:
    import xarray as xr

    engine = "zarr" if _is_zarr(path) else "h5netcdf"
    if Path(path).is_dir() and engine != "zarr":
        raise UserError(f"{path}: a folder that is not a zarr store")
    try:
        with warnings.catch_warnings():
            # zarr stores without consolidated metadata open fine, only a little slower
            warnings.filterwarnings("ignore", message=".*consolidated metadata.*")
            return xr.open_dataset(path, engine=engine, chunks=None)
    except Exception as exc:  # xarray/h5py/zarr raise many types for unreadable files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot open with xarray ({engine}): {reason}") from None


def _describe_input(path: str, ds: Any, names: Sequence[str]) -> _Input:
    missing = [n for n in names if n not in ds.variables]
    if missing:
        have = ", ".join(sorted(str(v) for v in ds.data_vars))
        raise UserError(f"{path}: variable {missing[0]!r} not found (has: {have}); map source names with --variables")
    t_dim, y_dim, x_dim = map_dims(path, ds, names[0])  # by name and CF attributes, never by position
    for n in names[1:]:
        if set(ds[n].dims) != {t_dim, y_dim, x_dim}:
            raise UserError(f"{path}: variable {n!r} has dims {ds[n].dims}, expected {t_dim, y_dim, x_dim}")
    times = decode_times(path, ds, t_dim)
    if len(times) == 0:
        raise UserError(f"{path}: no time steps")
    if np.any(np.diff(times.astype(np.int64)) <= 0):
        raise UserError(f"{path}: time {t_dim!r} is not strictly increasing")
    return _Input(path=path, ds=ds, time_dim=t_dim, y_dim=y_dim, x_dim=x_dim, times=times)


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


def _read_block(inp: _Input, names: Sequence[str], tsl: slice, ysl: slice, xsl: slice) -> np.ndarray:
    sel = {inp.time_dim: tsl, inp.y_dim: ysl, inp.x_dim: xsl}
    out = []
    for k, n in enumerate(names):  # ``names`` is a prefix of the full mapping, in VARIABLES order
        try:
            part = inp.ds[n].isel(sel).transpose(inp.time_dim, inp.y_dim, inp.x_dim)
            values = np.asarray(part.values, dtype=np.float32)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{inp.path}: cannot read variable {n!r} ({reason})") from None
        if VARIABLES[k] == "sic" and str(inp.ds[n].attrs.get("units", "")).strip() in ("%", "percent"):
            values = values / np.float32(100.0)  # concentration in percent -> fraction
        out.append(values)
    return np.stack(out, axis=1)


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
) -> Manifest:
    """Convert NetCDF/zarr ``inputs`` into a sharded data set at ``out`` (with statistics).

    ``variables`` are the source names of ``sit, sic, damage, siu, siv``, in this order.
    """

    names = list(variables)
    if len(names) != len(VARIABLES):
        raise UserError(f"--variables: give {len(VARIABLES)} names for {','.join(VARIABLES)}, got {len(names)}")
    splits = splits or {k: list(v) for k, v in DEFAULT_SPLITS.items()}
    check_target(out, overwrite)  # before any work; the old set is replaced only at the very end
    items: list[_Input] = []
    try:
        for path in expand_inputs(inputs):
            ds = open_input(path)
            try:
                items.append(_describe_input(path, ds, names))
            except UserError:
                ds.close()
                raise
        return _convert_items(items, out, names, crop, shard_size, splits, progress)
    finally:
        for it in items:
            it.ds.close()


def _convert_items(
    items: list[_Input],
    out: str | os.PathLike,
    names: list[str],
    crop: str | None,
    shard_size: int,
    splits: dict[str, list[str]],
    progress: bool | None,
) -> Manifest:
    from tqdm import tqdm

    items.sort(key=lambda it: it.times[0])
    for a, b in zip(items, items[1:]):
        if b.times[0] <= a.times[-1]:
            raise UserError(f"{b.path}: time steps overlap those of {a.path}")
    full = _grid_shape(items[0])
    for it in items[1:]:
        shape = _grid_shape(it)
        if shape != full:
            raise UserError(f"{it.path}: grid {shape} differs from {full} of {items[0].path}")
    ysl, xsl = parse_crop(crop, full)
    grid = (ysl.stop - ysl.start, xsl.stop - xsl.start)
    times = np.concatenate([it.times for it in items])
    for name, span in splits.items():
        if not in_split(times, span).any():
            raise UserError(
                f"{items[0].path}: inputs cover {to_iso(times[0])}..{to_iso(times[-1])}, split {name} "
                f"({span[0]}..{span[1]}) would be empty; set the splits with --splits"
            )
    disable = None if progress is None else not progress

    # Pass 1: the mask, from sit alone.
    ocean = np.ones(grid, bool)
    for it in tqdm(items, desc="mask", unit="file", disable=disable):
        for tsl in iter_blocks(len(it.times), grid[0] * grid[1] * 4):
            sit = _read_block(it, names[:1], tsl, ysl, xsl)[:, 0]
            ocean &= np.isfinite(sit).all(axis=0)
    if not ocean.any():
        raise UserError(f"{items[0].path}: {names[0]!r} is NaN everywhere at some time; no ocean cell")

    default_lat, default_lon = _default_lat_lon(grid)
    lat = coordinate(items[0].path, items[0].ds, LAT_NAMES, items[0].y_dim, items[0].x_dim, full)
    lon = coordinate(items[0].path, items[0].ds, LON_NAMES, items[0].y_dim, items[0].x_dim, full)
    lat = default_lat if lat is None else np.where(np.isfinite(lat[ysl, xsl]), lat[ysl, xsl], default_lat)
    lon = default_lon if lon is None else np.where(np.isfinite(lon[ysl, xsl]), lon[ysl, xsl], default_lon)

    target = Path(out)
    out = staging_dir(target)  # the old data set stays until the new one is complete and checked
    try:
        static = (ocean, lat, lon)
        manifest = _write(items, out, names, crop, splits, static, (ysl, xsl), times, shard_size, disable)
        swap_in(out, target)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return manifest


def _grid_shape(inp: _Input) -> tuple[int, int]:
    return int(inp.ds.sizes[inp.y_dim]), int(inp.ds.sizes[inp.x_dim])


def _write(
    items: list[_Input],
    out: Path,
    names: list[str],
    crop: str | None,
    splits: dict[str, list[str]],
    static: tuple[np.ndarray, np.ndarray, np.ndarray],
    window: tuple[slice, slice],
    times: np.ndarray,
    shard_size: int,
    disable: bool | None,
) -> Manifest:
    """Pass 2: write the shards, statistics, static file (mask, lat, lon) and manifest into ``out``."""
    from tqdm import tqdm

    ocean, lat, lon = static
    ysl, xsl = window
    grid = ocean.shape
    c = len(VARIABLES)
    sample_bytes = c * grid[0] * grid[1] * 4
    lower = np.array([BOUNDS[v][0] for v in VARIABLES])
    upper = np.array([BOUNDS[v][1] for v in VARIABLES])
    stats = RunningStats(lower, upper)
    land = ~ocean
    writer = fields_writer(out, list(grid), shard_size)
    with writer:
        bar = tqdm(total=len(times), desc="convert", unit="sample", disable=disable)
        for it in items:
            train = in_split(it.times, splits["train"])
            for tsl in iter_blocks(len(it.times), sample_bytes):
                block = _read_block(it, names, tsl, ysl, xsl)
                _check_block(block, ocean, lower, upper, names, it, tsl)
                block[:, :, land] = 0.0
                writer.write(block, it.times[tsl])
                sel = train[tsl]
                if sel.any():
                    stats.update(block[sel], ocean)
                bar.update(block.shape[0])
        bar.close()
    std = safe_std(stats.std, list(VARIABLES), str(out / "static.h5"))
    write_static(out, ocean, lat, lon, stats.mean, std, summary=stats.summary(), attrs={"stats_split": "train"})
    source = {
        "converter": "hpc_seaice.data.convert",
        "inputs": [it.path for it in items],
        "variables": dict(zip(VARIABLES, names)),
        "crop": crop or "",
        "mask": f"ocean where {names[0]} is finite at all {len(times)} time steps",
    }
    manifest = writer.build_manifest(splits=splits, source=source)
    write_manifest(out, manifest)
    add_pc1_std(out)  # the sampler's starting noise is sized from it, as for a generated set
    return manifest


def _default_lat_lon(grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return polar_lat_lon(grid[0], grid[1])


def _check_block(
    block: np.ndarray,
    ocean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    names: Sequence[str],
    inp: _Input,
    tsl: slice,
) -> None:
    """NaN in ocean cells is an error; bound excursions within tolerance are clipped, else an error."""
    for k, name in enumerate(names):
        x = block[:, k]
        xo = x[:, ocean]
        bad = ~np.isfinite(xo)
        if bad.any():
            t = inp.times[tsl][int(np.nonzero(bad.any(axis=1))[0][0])]
            raise UserError(
                f"{inp.path}: NaN in ocean cells of {name!r} at {to_iso(t)} "
                f"(ocean = cells where {names[0]!r} is finite at all times)"
            )
        lo, hi = float(lower[k]), float(upper[k])
        scale = 1.0 if not math.isfinite(hi - lo) else hi - lo
        tol = BOUND_TOLERANCE * scale
        below, above = xo < lo - tol, xo > hi + tol
        if below.any() or above.any():
            bad_rows = (below | above).any(axis=1)
            i = int(np.nonzero(bad_rows)[0][0])
            v = xo[i][(below | above)[i]][0]
            raise UserError(
                f"{inp.path}: {name!r} value {v:g} at {to_iso(inp.times[tsl][i])} is outside the physical "
                f"bounds [{lo:g}, {hi:g}] of {VARIABLES[k]}"
            )
        if math.isfinite(lo) or math.isfinite(hi):
            np.clip(x, lo, hi, out=x)


def cli_convert(args: Any) -> int:
    """``hpc-seaice data convert INPUT... --out DIR``: convert, then print the summary."""
    from hpc_seaice.data.synth import summarize

    names = [n.strip() for n in args.variables.split(",") if n.strip()]
    convert(
        args.inputs,
        args.out,
        variables=names,
        crop=args.crop,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        splits=parse_splits(getattr(args, "splits", "")),
    )
    print(summarize(args.out), file=sys.stdout)
    return 0
