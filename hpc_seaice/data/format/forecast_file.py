"""Ensemble forecasts as one CF NetCDF file: what ``hpc-seaice forecast`` writes and ``evaluate --forecast`` reads.

One file holds one ensemble rollout from one initial state:

- dims ``(member, time, y, x)``;
- data variables: the five field variables of :mod:`hpc_seaice.data.format.variables` (``sit``,
  ``sic``, ``damage``, ``siu``, ``siv``), each ``[member, time, y, x]`` float32 in physical units,
  with the attributes of a samples file (:func:`.samples_file.variable_attrs`: units, long and
  standard names, valid range), and the ocean ``mask`` ``[y, x]``;
- coordinates: ``member`` (0 .. M-1); ``time``, the valid times (CF datetime, seconds since
  1970); ``lead_time`` along ``time`` (``time - forecast_reference_time``, a CF duration with
  ``standard_name = forecast_period``, read back by xarray as ``timedelta64``); the scalar
  ``forecast_reference_time`` (the time of the initial state); the grid's ``lat``/``lon`` (and
  ``x``, ``y`` with the ``polar_stereographic`` grid mapping on the project's grid), exactly as in
  a samples file (:func:`.samples_file.grid_coords`);
- global attributes: ``hpc_seaice_file = "forecast"``, ``format_version``, and the provenance,
  at least ``run`` (the forecaster's run folder), ``data`` (the data set it was started from and
  forced with) and ``seed``; anything else the writer knows (steps, checkpoint step, ...).

The initial state itself is not a member of the file unless the writer includes lead 0; every
valid time must be a time of the data set the forecast is scored against. ``xarray.open_dataset``
opens the file as it is (``time`` as datetime64, ``lead_time`` as timedelta64).

:func:`read_forecast` checks all of this and says in one line what is wrong, naming the file
and the value: a samples file or any other NetCDF is refused, not misread.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from hpc_seaice.data.format.manifest import TIME_UNITS
from hpc_seaice.data.format.samples_file import (
    ENGINE,
    attr_value,
    grid_coords,
    mask_variable,
    open_netcdf,
    variable_attrs,
    variable_values,
    with_grid_mapping,
    write_netcdf,
)
from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.errors import UserError

FILE_KIND = "forecast"
FORMAT_VERSION = 1
DIMS: tuple[str, ...] = ("member", "time", "y", "x")
REQUIRED_ATTRS: tuple[str, ...] = ("run", "data", "seed")
LEAD_UNITS = "seconds"
WHAT = "forecast file"

__all__ = [
    "ENGINE",
    "FILE_KIND",
    "forecast_dataset",
    "lead_times",
    "member_fields",
    "read_forecast",
    "write_forecast",
]


def _datetimes(values: Any) -> np.ndarray:
    times = np.asarray(values)
    if not np.issubdtype(times.dtype, np.datetime64):
        times = np.asarray(values, dtype="datetime64[s]")
    return times.astype("datetime64[ns]")


def forecast_dataset(
    fields: np.ndarray,
    mask: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    reference_time: np.datetime64 | str,
    valid_times: Sequence[np.datetime64 | str] | np.ndarray,
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """An ensemble forecast as the CF ``xarray.Dataset`` that a forecast file holds.

    Args:
        fields: ``[M, T, C, H, W]`` physical values, channels in ``VARIABLES`` order.
        mask: ``[H, W]``, 1 = ocean.
        lat, lon: ``[H, W]`` degrees north / east (the data set's).
        reference_time: the time of the initial state.
        valid_times: ``[T]`` the times the ``T`` states are valid at, increasing, none before
            ``reference_time``.
        attrs: provenance, at least ``run``, ``data`` and ``seed``.
    """
    fields = np.asarray(fields)
    if fields.ndim != 5 or fields.shape[2] != len(VARIABLES):
        raise ValueError(f"fields must be [M, T, {len(VARIABLES)}, H, W], got {fields.shape}")
    m, t, _, h, w = fields.shape
    for label, arr in (("mask", mask), ("lat", lat), ("lon", lon)):
        if np.shape(arr) != (h, w):
            raise ValueError(f"{label} must be [{h}, {w}], got {np.shape(arr)}")
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"attrs must name {', '.join(missing)}")
    ref = _datetimes(reference_time).reshape(())
    times = _datetimes(valid_times).reshape(-1)
    if times.size != t:
        raise ValueError(f"{times.size} valid times for {t} time steps")
    if t and ((np.diff(times) <= np.timedelta64(0)).any() or times[0] < ref):
        raise ValueError("valid times must increase and not precede the reference time")

    data_vars: dict[str, Any] = {
        name: (DIMS, fields[:, :, c].astype(np.float32), variable_attrs(name)) for c, name in enumerate(VARIABLES)
    }
    data_vars["mask"] = mask_variable(mask)
    coords: dict[str, Any] = {
        "member": ("member", np.arange(m, dtype=np.int32), {"long_name": "ensemble member"}),
        "time": ("time", times, {"standard_name": "time", "long_name": "valid time"}),
        "lead_time": (
            "time",
            times - ref,
            {"standard_name": "forecast_period", "long_name": "lead time (valid time - forecast reference time)"},
        ),
        "forecast_reference_time": (
            (),
            ref,
            {"standard_name": "forecast_reference_time", "long_name": "time of the initial state"},
        ),
        **grid_coords(lat, lon),
    }
    global_attrs: dict[str, Any] = {
        "Conventions": "CF-1.8",
        "title": "hpc-seaice ensemble forecast",
        "hpc_seaice_file": FILE_KIND,
        "format_version": FORMAT_VERSION,
        "date_created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    global_attrs.update({str(k): attr_value(v) for k, v in attrs.items()})
    return with_grid_mapping(xr.Dataset(data_vars, coords=coords, attrs=global_attrs))


def write_forecast(path: str | os.PathLike, ds: xr.Dataset) -> Path:
    """Write a :func:`forecast_dataset` to one NetCDF file ``path`` (atomically; the folder is created).

    The fields are stored compressed, one chunk per member and valid time, so a reader scoring
    one lead at a time reads only that lead. Returns the path.
    """
    _, _, h, w = ds[VARIABLES[0]].shape
    encoding: dict[str, dict[str, Any]] = {}
    for name in ds.data_vars:
        if ds[name].dims == DIMS:
            encoding[name] = {"zlib": True, "complevel": 4, "chunksizes": (1, 1, h, w), "_FillValue": None}
    for name in ("lat", "lon"):
        encoding[name] = {"_FillValue": None}
    for name in ("time", "forecast_reference_time"):
        encoding[name] = {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64"}
    encoding["lead_time"] = {"units": LEAD_UNITS, "dtype": "int64"}
    return write_netcdf(path, ds, encoding)


def read_forecast(path: str | os.PathLike) -> xr.Dataset:
    """Open a forecast file (lazily; close it when done), checked against the format above.

    Raises:
        UserError: one line naming the file and the value: missing or unreadable file, not a
            forecast file (no ``forecast_reference_time`` or ``lead_time``, or another file kind),
            a variable or attribute missing, wrong dimensions, valid times that do not increase,
            or a ``lead_time`` that is not ``time - forecast_reference_time``.
    """
    path = Path(path)
    ds = open_netcdf(path, WHAT)
    try:
        _check(ds, path)
    except BaseException:
        ds.close()
        raise
    return ds


def _check(ds: xr.Dataset, path: Path) -> None:
    kind = ds.attrs.get("hpc_seaice_file")
    if kind is not None and kind != FILE_KIND:
        raise UserError(f"{WHAT} {path} is not a forecast file: hpc_seaice_file = {kind!r}")
    lacking = [name for name in ("forecast_reference_time", "lead_time") if name not in ds.variables]
    if lacking:
        hint = " (a samples file of hpc-seaice sample?)" if "sample" in ds.dims else ""
        raise UserError(f"{WHAT} {path} is not a forecast file: no {' and no '.join(lacking)} coordinate{hint}")
    missing = [name for name in (*VARIABLES, "mask") if name not in ds.variables]
    if missing:
        raise UserError(f"{WHAT} {path} lacks variable(s) {', '.join(missing)}")
    for name in VARIABLES:
        if ds[name].dims != DIMS:
            raise UserError(f"{WHAT} {path}: variable {name} has dims {ds[name].dims}, expected {DIMS}")
    if ds["mask"].dims != ("y", "x"):
        raise UserError(f"{WHAT} {path}: variable mask has dims {ds['mask'].dims}, expected ('y', 'x')")
    absent = [key for key in REQUIRED_ATTRS if key not in ds.attrs]
    if absent:
        raise UserError(f"{WHAT} {path} lacks the global attribute(s) {', '.join(absent)}")
    if ds.sizes["member"] < 1 or ds.sizes["time"] < 1:
        raise UserError(f"{WHAT} {path} holds no forecast: {ds.sizes['member']} members, {ds.sizes['time']} times")
    times, ref = ds["time"].values, ds["forecast_reference_time"].values
    if not np.issubdtype(times.dtype, np.datetime64) or not np.issubdtype(ref.dtype, np.datetime64):
        raise UserError(f"{WHAT} {path}: time and forecast_reference_time must be CF datetimes (a units attribute)")
    if ds["forecast_reference_time"].ndim != 0:
        raise UserError(
            f"{WHAT} {path}: forecast_reference_time must be a scalar, has dims {ds['forecast_reference_time'].dims}"
        )
    if (np.diff(times) <= np.timedelta64(0)).any():
        k = int(np.argmax(np.diff(times) <= np.timedelta64(0)))
        raise UserError(f"{WHAT} {path}: valid times do not increase at {_iso(times[k + 1])}")
    leads = ds["lead_time"]
    if leads.dims != ("time",) or not np.issubdtype(leads.dtype, np.timedelta64):
        raise UserError(f"{WHAT} {path}: lead_time must be a duration along time, has dims {leads.dims}, {leads.dtype}")
    wrong = leads.values != (times - ref)
    if wrong.any():
        k = int(np.argmax(wrong))
        raise UserError(
            f"{WHAT} {path}: lead_time {_hours(leads.values[k])} h at {_iso(times[k])} is not time - "
            f"forecast_reference_time ({_iso(ref)})"
        )
    if (leads.values < np.timedelta64(0)).any():
        raise UserError(f"{WHAT} {path}: valid time {_iso(times[0])} precedes forecast_reference_time {_iso(ref)}")


def lead_times(ds: xr.Dataset) -> np.ndarray:
    """``[T]`` lead times as ``timedelta64[s]``."""
    return np.asarray(ds["lead_time"].values).astype("timedelta64[s]")


def member_fields(ds: xr.Dataset, k: int, assumed: Mapping[str, str] | None = None) -> np.ndarray:
    """``[M, C, H, W]`` float32: every member at valid time ``k``, in the project's units.

    Reads only that time step (one chunk per member and variable). Units are converted from the
    file's ``units`` attributes like a samples file's (:func:`.samples_file.variable_values`).
    """
    at = ds.isel(time=k)
    return np.stack([variable_values(at, name, assumed) for name in VARIABLES], axis=1)


def _iso(t: np.datetime64) -> str:
    return str(np.datetime_as_string(np.datetime64(t, "s"), unit="s"))


def _hours(d: np.timedelta64) -> str:
    return f"{np.timedelta64(d, 's').astype(np.int64) / 3600:g}"
