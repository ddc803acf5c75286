"""Generated samples as CF-style NetCDF, written and read through xarray.

One file holds one model's ensemble: dims ``(sample, y, x)``, the five variables of
:mod:`hpc_seaice.data.format.variables` in physical units with ``units``, ``long_name`` and
``valid_min``/``valid_max`` where bounded, the ocean ``mask``, 2-D ``lat``/``lon`` and the
provenance (run, checkpoint step, sampler, steps, seed, ...) as global attributes, so that a file
is self-describing months later. Optional ``<var>_raw`` variables keep the values before clipping
to the physical bounds, from which ``evaluate`` measures how often a model leaves the bounds.
Reading converts each variable from its ``units`` to the project's (:mod:`hpc_seaice.data.format.units`),
so a file written elsewhere in cm or % scores like one in m and 1.

Land cells keep the values they were given (the sampler writes 0 there); ``mask`` says which
cells are ocean.

When lat/lon are the cell centres of a regular grid of the project's polar stereographic
projection (EPSG:3413 parameters, :mod:`hpc_seaice.data.geo.grid`), the file also carries the
projected ``x``, ``y`` coordinates in metres and a CF ``grid_mapping`` variable
(``polar_stereographic``), so that xarray/cartopy users can plot the fields on a map as they
are. Other grids keep lat/lon only.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from hpc_seaice.data.format.units import to_project_factor
from hpc_seaice.data.format.variables import BOUNDS, LONG_NAMES, UNITS, VARIABLES
from hpc_seaice.data.geo.grid import (
    CENTRAL_MERIDIAN,
    INVERSE_FLATTENING,
    LAT_TRUE_SCALE,
    SEMI_MAJOR_M,
    forward,
)
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import GuardedFile, atomic_target, write_error

ENGINE = "h5netcdf"
RAW_SUFFIX = "_raw"
STANDARD_NAMES = {
    "sit": "sea_ice_thickness",
    "sic": "sea_ice_area_fraction",
    "siu": "sea_ice_x_velocity",
    "siv": "sea_ice_y_velocity",
}


GRID_MAPPING = "polar_stereographic"
GRID_MAPPING_ATTRS: dict[str, Any] = {
    "grid_mapping_name": "polar_stereographic",
    "latitude_of_projection_origin": 90.0,
    "standard_parallel": LAT_TRUE_SCALE,
    "straight_vertical_longitude_from_pole": CENTRAL_MERIDIAN,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "semi_major_axis": SEMI_MAJOR_M,
    "inverse_flattening": INVERSE_FLATTENING,
    "comment": "WGS84 north polar stereographic, true scale at 70 N, like EPSG:3413",
}


def projected_axes(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Cell-centre x [W], y [H] (metres) if lat/lon form a regular grid of the projection.

    Regular: every row projects to one y, every column to one x, equally spaced, within 1 % of
    a cell. Anything else (a curvilinear model grid, made-up coordinates) gives None.
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.ndim != 2 or min(lat.shape) < 2 or not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        return None
    if lat.min() < 0.0:
        return None
    x, y = forward(lat, lon)
    xs, ys = x.mean(axis=0), y.mean(axis=1)
    cell = float(np.mean(np.diff(xs)))
    if cell <= 0:
        return None
    tol = 0.01 * cell
    regular = (
        np.abs(np.diff(xs) - cell).max() < tol
        and np.abs(np.diff(ys) - cell).max() < tol
        and np.abs(x - xs[None, :]).max() < tol
        and np.abs(y - ys[:, None]).max() < tol
    )
    return (xs, ys) if regular else None


def attr_value(value: Any) -> Any:
    """A value NetCDF can store as an attribute (str, number or 1-D numeric array)."""
    if value is None:
        return "none"
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, str | int | float | np.integer | np.floating):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple | np.ndarray):
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.size and np.issubdtype(arr.dtype, np.number):
            return arr
    return json.dumps(value, default=str)


def variable_attrs(name: str, raw: bool = False) -> dict[str, Any]:
    """CF attributes of variable ``name`` (units, long and standard name, valid range; ``raw``:
    the values before clipping, which have no valid range)."""
    attrs: dict[str, Any] = {"units": UNITS[name], "long_name": LONG_NAMES[name]}
    if name in STANDARD_NAMES and not raw:
        attrs["standard_name"] = STANDARD_NAMES[name]
    lower, upper = BOUNDS[name]
    if raw:
        attrs["long_name"] = f"{LONG_NAMES[name]} before clipping to the physical bounds"
        attrs["comment"] = f"physical bounds [{lower}, {upper}]; values outside them were clipped in {name}"
    else:
        if math.isfinite(lower):
            attrs["valid_min"] = np.float32(lower)
        if math.isfinite(upper):
            attrs["valid_max"] = np.float32(upper)
    return attrs


MASK_ATTRS: dict[str, Any] = {
    "long_name": "ocean mask",
    "flag_values": np.array([0, 1], dtype=np.int8),
    "flag_meanings": "land ocean",
    "units": "1",
}


def mask_variable(mask: np.ndarray) -> tuple[tuple[str, str], np.ndarray, dict[str, Any]]:
    """The ocean ``mask`` variable (1 = ocean, int8 with CF flags) of a grid."""
    return ("y", "x"), (np.asarray(mask) > 0.5).astype(np.int8), dict(MASK_ATTRS)


def grid_coords(lat: np.ndarray, lon: np.ndarray) -> dict[str, tuple[Any, ...]]:
    """The CF coordinates of a grid: 2-D ``lat``/``lon`` (float32), and the projected ``x``, ``y``
    in metres when lat/lon are the cell centres of a regular grid of the projection.

    A samples file and ``hs.open_dataset`` both take their coordinates from here, so a data set
    and samples of a model trained on it align with ``xarray.align`` (same ``x``, ``y``).
    """
    coords: dict[str, tuple[Any, ...]] = {
        "lat": (
            ("y", "x"),
            np.asarray(lat, dtype=np.float32),
            {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"},
        ),
        "lon": (
            ("y", "x"),
            np.asarray(lon, dtype=np.float32),
            {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"},
        ),
    }
    axes = projected_axes(lat, lon)
    if axes is not None:
        coords["x"] = ("x", axes[0], {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"})
        coords["y"] = ("y", axes[1], {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"})
    return coords


def with_grid_mapping(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the CF ``polar_stereographic`` grid-mapping variable, named by every variable on
    the (y, x) grid, when it has projected ``x``/``y`` coordinates (else ``ds`` unchanged)."""
    if "x" not in ds.coords or "y" not in ds.coords:
        return ds
    on_grid = [name for name in ds.data_vars if ds[name].dims[-2:] == ("y", "x")]
    ds[GRID_MAPPING] = ((), np.int32(0), dict(GRID_MAPPING_ATTRS))
    for name in on_grid:
        ds[name].attrs["grid_mapping"] = GRID_MAPPING
    return ds


def samples_dataset(
    fields: np.ndarray,
    mask: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    attrs: Mapping[str, Any],
    raw: np.ndarray | None = None,
) -> xr.Dataset:
    """An ensemble of physical fields as the CF-style ``xarray.Dataset`` that a samples file holds.

    Args:
        fields: ``[N, C, H, W]`` physical values, channels in ``VARIABLES`` order.
        mask: ``[H, W]``, 1 = ocean.
        lat, lon: ``[H, W]`` degrees north / east.
        attrs: provenance written as global attributes (run, checkpoint step, sampler, steps,
            seed, ...; a ``model`` entry names the model in evaluation reports).
        raw: optional ``[N, C, H, W]`` values before clipping, stored as ``<var>_raw``.
    """
    fields = np.asarray(fields)
    if fields.ndim != 4 or fields.shape[1] != len(VARIABLES):
        raise ValueError(f"fields must be [N, {len(VARIABLES)}, H, W], got {fields.shape}")
    n, _, h, w = fields.shape
    for label, arr in (("mask", mask), ("lat", lat), ("lon", lon)):
        if np.shape(arr) != (h, w):
            raise ValueError(f"{label} must be [{h}, {w}], got {np.shape(arr)}")
    if raw is not None and np.shape(raw) != fields.shape:
        raise ValueError(f"raw must have the shape of fields {fields.shape}, got {np.shape(raw)}")

    dims = ("sample", "y", "x")
    data_vars: dict[str, Any] = {}
    for c, name in enumerate(VARIABLES):
        data_vars[name] = (dims, fields[:, c].astype(np.float32), variable_attrs(name))
        if raw is not None:
            data_vars[name + RAW_SUFFIX] = (
                dims,
                np.asarray(raw[:, c], dtype=np.float32),
                variable_attrs(name, raw=True),
            )
    data_vars["mask"] = mask_variable(mask)
    coords = {
        "sample": ("sample", np.arange(n, dtype=np.int32), {"long_name": "sample index"}),
        **grid_coords(lat, lon),
    }
    global_attrs: dict[str, Any] = {
        "Conventions": "CF-1.8",
        "title": "hpc-seaice generated sea-ice states",
        "date_created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    global_attrs.update({str(k): attr_value(v) for k, v in attrs.items()})
    return with_grid_mapping(xr.Dataset(data_vars, coords=coords, attrs=global_attrs))


def write_samples(path: str | os.PathLike, ds: xr.Dataset) -> Path:
    """Write a :func:`samples_dataset` to one NetCDF file ``path`` (atomically; the folder is created).

    The fields are stored compressed, one chunk per sample. Returns the path.
    """
    _, h, w = ds[VARIABLES[0]].shape
    encoding: dict[str, dict[str, Any]] = {}
    for name in ds.data_vars:
        if ds[name].dims == ("sample", "y", "x"):
            encoding[name] = {"zlib": True, "complevel": 4, "chunksizes": (1, h, w), "_FillValue": None}
    for name in ("lat", "lon"):
        encoding[name] = {"_FillValue": None}
    return write_netcdf(path, ds, encoding)


def write_netcdf(path: str | os.PathLike, ds: xr.Dataset, encoding: Mapping[str, dict[str, Any]]) -> Path:
    """Write ``ds`` with ``encoding`` to one NetCDF file ``path``: atomically (a kill leaves the old
    file or none), the folder created, a full disk one line naming the file. Returns the path.

    Shared by the samples file and the forecast file (:mod:`.forecast_file`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        raw = GuardedFile(tmp)  # a full disk: one line below, not HDF5's crash (see GuardedFile)
        try:
            ds.to_netcdf(raw, engine=ENGINE, encoding=dict(encoding))
        finally:
            raw.sync()
            raw.close()
        if raw.error is not None:
            raise UserError(write_error(path, raw.error))
    return path


def read_samples(path: str | os.PathLike) -> xr.Dataset:
    """Open a samples file written by :func:`write_samples` (lazily; close it when done).

    Raises:
        UserError: the file is missing, is not NetCDF, or lacks a variable, the mask or the
            ``(sample, y, x)`` dimensions.
    """
    path = Path(path)
    ds = open_netcdf(path, "samples file")
    missing = [name for name in (*VARIABLES, "mask") if name not in ds.variables]
    if missing:
        ds.close()
        raise UserError(f"samples file {path} lacks variable(s) {', '.join(missing)}")
    for name in VARIABLES:
        if ds[name].dims != ("sample", "y", "x"):
            dims = ds[name].dims
            ds.close()
            raise UserError(f"samples file {path}: variable {name} has dims {dims}, expected (sample, y, x)")
    return ds


def open_netcdf(path: Path, what: str) -> xr.Dataset:
    """Open NetCDF file ``path`` lazily; a missing or unreadable file is one line naming ``what`` and the path."""
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        return xr.open_dataset(path, engine=ENGINE)
    except Exception as exc:  # h5py/h5netcdf raise several types for a non-NetCDF file
        raise UserError(f"{what} {path} is not a readable NetCDF file ({exc})") from exc


def variable_values(ds: xr.Dataset, name: str, assumed: Mapping[str, str] | None = None) -> np.ndarray:
    """Variable ``name`` (one of ``VARIABLES``, or its ``<var>_raw``) in the project's units, float32.

    Its ``units`` attribute is read and converted, or replaced by ``assumed`` (``--assume-units``,
    by variable name); missing or unknown units are one line naming the file and the variable.
    """
    where = str(ds.encoding.get("source", "samples file"))
    factor = to_project_factor(where, name.removesuffix(RAW_SUFFIX), ds[name].attrs, assumed or {}, name)
    values = np.asarray(ds[name].values, dtype=np.float32)
    return values if factor == 1.0 else values * np.float32(factor)


def sample_arrays(
    ds: xr.Dataset, with_raw: bool = True, assumed: Mapping[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(fields [N, C, H, W] float32, raw [N, C, H, W] or None, mask [H, W] float32)``, in the
    project's units (:func:`variable_values`).

    ``raw`` holds ``<var>_raw`` where present and the clipped values for the variables that have
    no raw copy; it is None when no variable has one (or ``with_raw`` is false, to save memory).
    """
    fields = np.empty((ds.sizes["sample"], len(VARIABLES), ds.sizes["y"], ds.sizes["x"]), np.float32)
    for c, name in enumerate(VARIABLES):
        fields[:, c] = variable_values(ds, name, assumed)
    has_raw = [name + RAW_SUFFIX in ds.variables for name in VARIABLES]
    raw = None
    if with_raw and any(has_raw):
        raw = np.stack(
            [
                variable_values(ds, name + RAW_SUFFIX, assumed) if present else fields[:, c]
                for c, (name, present) in enumerate(zip(VARIABLES, has_raw))
            ],
            axis=1,
        )
    mask = (ds["mask"].values > 0.5).astype(np.float32)
    return fields, raw, mask
