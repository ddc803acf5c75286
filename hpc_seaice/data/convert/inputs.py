"""The inputs of ``data convert``: checked file by file, then read as one lazy data set.

Every input (a NetCDF file or a zarr store) is first opened on its own, metadata only, so that
each error names the file: a missing variable, dimensions that do not map onto (time, y, x), a
time axis that does not decode or does not increase, another grid, overlapping time steps, a
variable whose ``units`` are missing or do not convert to the project's
(:mod:`hpc_seaice.data.format.units`; each file's own units, so an archive may change units).
The checked inputs, in time order, are then opened together with ``xarray.open_mfdataset``
(dask arrays concatenated along time, one chunk per block of time steps), so a block of time
steps reads only the files it spans and memory stays bounded whatever the archive size.
"""

from __future__ import annotations

import contextlib
import glob
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from hpc_seaice.data.blocks import evenly_spaced
from hpc_seaice.data.convert.layout import LAT_NAMES, LON_NAMES, coordinate, decode_times, map_dims
from hpc_seaice.data.format.units import to_project_factor
from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.errors import UserError

LAT_LON_PROBES = 1024  # cells whose lat/lon are compared between inputs
LAT_LON_TOLERANCE = 1e-3  # degrees (about 100 m): float32 storage or packing differ by far less


@dataclass
class InputFile:
    """One input as checked on its own."""

    path: str
    engine: str  # "h5netcdf" or "zarr"
    dims: tuple[str, str, str]  # (time, y, x)
    times: np.ndarray  # datetime64[s]
    grid: tuple[int, int]
    factors: tuple[float, ...]  # per mapped variable: its units -> the project's (1.0: already in them)
    lat_lon: np.ndarray | None = None  # lat and lon at evenly spaced cells [2, k]; None when it has none


@dataclass
class Inputs:
    """All inputs in time order and their concatenation along time (lazy, dask)."""

    files: list[InputFile]
    ds: Any  # xarray.Dataset from open_mfdataset
    times: np.ndarray  # every time step, datetime64[s]
    starts: np.ndarray  # index of each file's first time step in ``times``

    def factors(self, k: int, steps: slice) -> np.ndarray:
        """Unit factors of variable ``k`` at time steps ``steps`` (each from its file's units) [T, 1, 1]."""
        per_file = np.array([f.factors[k] for f in self.files], dtype=np.float32)
        owner = np.searchsorted(self.starts, np.arange(len(self.times))[steps], side="right") - 1
        return per_file[owner][:, None, None]

    @property
    def dims(self) -> tuple[str, str, str]:
        return self.files[0].dims

    @property
    def grid(self) -> tuple[int, int]:
        return self.files[0].grid

    def path_at(self, index: int) -> str:
        """The input holding time step ``index``."""
        return self.files[int(np.searchsorted(self.starts, index, side="right")) - 1].path

    def read(self, names: Sequence[str], steps: slice, ysl: slice, xsl: slice) -> np.ndarray:
        """Time steps ``steps`` of the variables ``names`` (a prefix of the mapping) as float32 [T, V, y, x]."""
        t_dim, y_dim, x_dim = self.dims
        sel = {t_dim: steps, y_dim: ysl, x_dim: xsl}
        out = []
        for k, name in enumerate(names):
            try:
                part = self.ds[name].isel(sel).transpose(t_dim, y_dim, x_dim)
                values = np.asarray(part.values, dtype=np.float32)
            except Exception as exc:  # h5py, zarr and dask raise many types for unreadable data
                path, exc = self._unreadable(name, sel, steps, exc)
                raise UserError(f"{path}: cannot read variable {name!r} ({_reason(exc)})") from None
            factors = self.factors(k, steps)
            out.append(values if np.all(factors == 1) else values * factors)
        return np.stack(out, axis=1)

    def _unreadable(self, name: str, sel: dict[str, slice], steps: slice, exc: Exception) -> tuple[str, Exception]:
        """The first input whose part of ``steps`` fails to read, and its error: a block spans files."""
        stops = [*self.starts[1:], len(self.times)]
        for f, lo, hi in zip(self.files, self.starts, stops):
            part = slice(max(int(lo), steps.start), min(int(hi), steps.stop))
            if part.start >= part.stop:
                continue
            try:
                self.ds[name].isel({**sel, self.dims[0]: part}).load()
            except Exception as err:  # noqa: BLE001 - the same many types as in read
                return f.path, err
        return self.path_at(steps.start), exc

    def close(self) -> None:
        self.ds.close()


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


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


def engine_of(path: str) -> str:
    p = Path(path)
    markers = (".zgroup", "zarr.json", ".zmetadata")
    if p.is_dir() and (p.suffix == ".zarr" or any((p / m).exists() for m in markers)):
        return "zarr"
    if p.is_dir():
        raise UserError(f"{path}: a folder that is not a zarr store")
    return "h5netcdf"


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    """zarr stores without consolidated metadata open fine, only a little slower: no warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*consolidated metadata.*")
        yield


def _open(path: str, engine: str) -> Any:
    try:
        with _quiet_zarr():
            return xr.open_dataset(path, engine=engine, chunks=None)
    except Exception as exc:  # xarray/h5py/zarr raise many types for unreadable files
        raise UserError(f"{path}: cannot open with xarray ({engine}): {_reason(exc)}") from None


def check_file(path: str, names: Sequence[str], assumed: Mapping[str, str] | None = None) -> InputFile:
    """Open ``path`` alone and check what the conversion needs of it (names: sources of ``VARIABLES``;
    ``assumed``: units stated with ``--assume-units``, by target name)."""
    engine = engine_of(path)
    with _open(path, engine) as ds:
        missing = [n for n in names if n not in ds.variables]
        if missing:
            have = ", ".join(sorted(str(v) for v in ds.data_vars))
            hint = "map source names with --variables"
            raise UserError(f"{path}: variable {missing[0]!r} not found (has: {have}); {hint}")
        dims = map_dims(path, ds, names[0])  # by name and CF attributes, never by position
        for n in names[1:]:
            if set(ds[n].dims) != set(dims):
                raise UserError(f"{path}: variable {n!r} has dims {ds[n].dims}, expected {dims}")
        times = decode_times(path, ds, dims[0])
        if len(times) == 0:
            raise UserError(f"{path}: no time steps")
        if np.any(np.diff(times.astype(np.int64)) <= 0):
            raise UserError(f"{path}: time {dims[0]!r} is not strictly increasing")
        grid = (int(ds.sizes[dims[1]]), int(ds.sizes[dims[2]]))
        factors = tuple(
            to_project_factor(path, target, ds[source].attrs, assumed or {}, source)
            for target, source in zip(VARIABLES, names)
        )
        lat_lon = _lat_lon_probe(path, ds, dims, grid)
    return InputFile(path, engine, dims, times, grid, factors, lat_lon)


def _lat_lon_probe(path: str, ds: Any, dims: tuple[str, str, str], grid: tuple[int, int]) -> np.ndarray | None:
    """The file's lat and lon at up to ``LAT_LON_PROBES`` evenly spaced cells of its (y, x) grid.

    Enough to tell two grids apart (another projection, a shifted crop), small enough to keep one
    per input; a missing lat or lon is NaN.
    """
    coords = [coordinate(path, ds, names, dims[1], dims[2], grid) for names in (LAT_NAMES, LON_NAMES)]
    if all(c is None for c in coords):
        return None
    cells = evenly_spaced(grid[0] * grid[1], LAT_LON_PROBES)
    return np.stack([np.full(len(cells), np.nan) if c is None else c.reshape(-1)[cells] for c in coords])


def same_grid(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two lat/lon probes agree within ``LAT_LON_TOLERANCE`` degrees (longitudes modulo 360;
    NaN where both are NaN), so one grid stored at two precisions or in two longitude conventions matches."""
    lat = np.abs(a[0] - b[0])
    lon = np.abs((a[1] - b[1] + 180.0) % 360.0 - 180.0)
    close = np.stack([lat, lon]) <= LAT_LON_TOLERANCE
    return bool(np.all(close | (np.isnan(a) & np.isnan(b))))


def _check_together(files: list[InputFile]) -> None:
    first = files[0]
    # lat/lon: against the first file that has them (files without them say nothing about the grid)
    located = next((f for f in files if f.lat_lon is not None), first)
    for a, b in zip(files, files[1:]):
        if b.times[0] <= a.times[-1]:
            raise UserError(f"{b.path}: time steps overlap those of {a.path}")
    for f in files[1:]:
        if f.grid != first.grid:
            raise UserError(f"{f.path}: grid {f.grid} differs from {first.grid} of {first.path}")
        if f.engine != first.engine:
            raise UserError(f"{f.path}: {f.engine} input among {first.engine} ones; convert NetCDF and zarr apart")
        if f.lat_lon is not None and located.lat_lon is not None and not same_grid(f.lat_lon, located.lat_lon):
            raise UserError(
                f"{f.path}: lat/lon differ from those of {located.path}, though the grids have one size; "
                "convert the outputs of different grids apart"
            )


def _rename_dims(own: dict[str, tuple[str, str, str]], dims: tuple[str, str, str], ds: Any) -> Any:
    """Give one input's (time, y, x) dimensions the names ``dims`` of the first: files of one archive
    may name them differently (``time`` and ``t``, ``y`` and ``nj``); ``own`` maps each file to its names."""
    mine = own[os.path.abspath(ds.encoding["source"])]
    return ds.rename({a: b for a, b in zip(mine, dims) if a != b})


def open_inputs(
    inputs: Sequence[str],
    names: Sequence[str],
    block_bytes: int = 64 << 20,
    assumed: Mapping[str, str] | None = None,
) -> Inputs:
    """Check every input, then open all of them as one data set, lazily, chunked by ``block_bytes``;
    ``assumed`` units (``--assume-units``) replace the files' own."""
    files = sorted((check_file(p, names, assumed) for p in expand_inputs(inputs)), key=lambda f: f.times[0])
    _check_together(files)
    t_dim = files[0].dims[0]
    steps = max(1, block_bytes // (4 * files[0].grid[0] * files[0].grid[1]))
    # Time blocks of whole grids (a file tiled in y/x on disk is not read tile by tile), under the
    # dimension names of every file: the chunks apply when a file is opened, before the renaming.
    chunks = {name: steps if k == 0 else -1 for f in files for k, name in enumerate(f.dims)}
    try:
        with _quiet_zarr():
            ds = xr.open_mfdataset(
                [f.path for f in files],
                engine=files[0].engine,
                combine="nested",
                concat_dim=t_dim,
                data_vars="minimal",
                coords="minimal",
                compat="override",
                join="override",
                decode_times=False,  # each file's own time axis was decoded and checked above
                chunks=chunks,
                preprocess=partial(_rename_dims, {os.path.abspath(f.path): f.dims for f in files}, files[0].dims),
            )
    except Exception as exc:
        raise UserError(f"{files[0].path} (and {len(files) - 1} more): cannot open together: {_reason(exc)}") from None
    lengths = np.array([len(f.times) for f in files])
    return Inputs(files, ds, np.concatenate([f.times for f in files]), np.cumsum(lengths) - lengths)
