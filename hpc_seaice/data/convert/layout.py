"""How a NetCDF/zarr variable's dimensions, coordinates and time axis map onto (time, y, x).

Dimensions are recognised by their coordinate's CF attributes (``axis`` T/Y/X, ``standard_name``)
or, failing those, by their name (``time``, ``y``/``nj``/``lat``, ``x``/``ni``/``lon``, ...),
never by position: a file written as ``(time, x, y)`` converts to the same fields as one written
as ``(time, y, x)``. A layout that cannot be mapped is refused in one line. The file's own
latitude and longitude are kept in either orientation. Times in the ``noleap``/``365_day``
calendar (decoded by xarray with cftime) convert, since each of their dates exists in the
standard calendar; calendars with dates that do not (``360_day``, ``all_leap``, ``julian``) are
refused with the list of calendars that work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpc_seaice.errors import UserError

if TYPE_CHECKING:
    import xarray as xr

TIME_NAMES = ("time", "t", "time_counter", "valid_time", "date")
Y_NAMES = ("y", "yc", "nj", "j", "rows", "ny", "lat", "latitude", "south_north")
X_NAMES = ("x", "xc", "ni", "i", "cols", "nx", "lon", "longitude", "west_east")
LAT_NAMES = ("lat", "latitude", "nav_lat", "nav_lat_grid_T")
LON_NAMES = ("lon", "longitude", "nav_lon", "nav_lon_grid_T")
STANDARD_NAMES = {
    "T": ("time",),
    "Y": ("projection_y_coordinate", "grid_latitude", "latitude"),
    "X": ("projection_x_coordinate", "grid_longitude", "longitude"),
}
CALENDARS = ("standard", "gregorian", "proleptic_gregorian", "noleap", "365_day")
ROLE_NAMES = {"T": "time", "Y": "y", "X": "x"}


def _role(ds: xr.Dataset, dim: str) -> str | None:
    """'T', 'Y', 'X' or None for one dimension, from its coordinate's attributes, else its name."""
    if dim in ds.variables:
        coord = ds[dim]
        axis = str(coord.attrs.get("axis", "")).upper()
        if axis in STANDARD_NAMES:
            return axis
        standard = str(coord.attrs.get("standard_name", ""))
        for role, names in STANDARD_NAMES.items():
            if standard in names:
                return role
        values = np.asarray(coord.values[:1])
        if np.issubdtype(values.dtype, np.datetime64) or (values.size and hasattr(values[0], "calendar")):
            return "T"
    low = dim.lower()
    for role, names in (("T", TIME_NAMES), ("Y", Y_NAMES), ("X", X_NAMES)):
        if low in names:
            return role
    return None


def map_dims(path: str, ds: xr.Dataset, name: str) -> tuple[str, str, str]:
    """(time, y, x) dimension names of variable ``name``, or a one-line UserError."""
    dims = tuple(str(d) for d in ds[name].dims)
    if len(dims) != 3:
        raise UserError(f"{path}: variable {name!r} has dims {dims}, expected three: time, y, x")
    roles: dict[str, str] = {}
    for dim in dims:
        role = _role(ds, dim)
        if role is None:
            continue
        if role in roles:
            raise UserError(
                f"{path}: variable {name!r} has dims {dims}; both {roles[role]!r} and {dim!r} look like "
                f"{ROLE_NAMES[role]}: give their coordinates CF axis attributes (T, Y, X)"
            )
        roles[role] = dim
    missing = [ROLE_NAMES[r] for r in "TYX" if r not in roles]
    if missing:
        raise UserError(
            f"{path}: variable {name!r} has dims {dims}: cannot tell which is {' and '.join(missing)}; name them "
            f"time, y, x or give their coordinates CF axis attributes (T, Y, X)"
        )
    return roles["T"], roles["Y"], roles["X"]


def decode_times(path: str, ds: xr.Dataset, t_dim: str) -> np.ndarray:
    """The time coordinate as datetime64[s], from the standard or the noleap calendar."""
    if t_dim not in ds.variables:
        raise UserError(f"{path}: no coordinate for the time dimension {t_dim!r}")
    coord = ds[t_dim]
    values = np.asarray(coord.values)
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[s]")
    calendar = str(coord.attrs.get("calendar", coord.encoding.get("calendar", "")))
    if values.size and hasattr(values.flat[0], "calendar"):  # cftime dates
        calendar = str(values.flat[0].calendar)
        if calendar in CALENDARS:
            return np.array([np.datetime64(t.strftime("%Y-%m-%dT%H:%M:%S"), "s") for t in values.ravel()])
    if calendar:
        raise UserError(
            f"{path}: time {t_dim!r} is in the {calendar!r} calendar, which does not convert to dates; calendars "
            f"that do: {', '.join(CALENDARS)} (noleap and 365_day need the cftime package)"
        )
    raise UserError(f"{path}: time coordinate {t_dim!r} is not decodable to dates (dtype {values.dtype})")


def coordinate(
    path: str, ds: xr.Dataset, names: tuple[str, ...], y_dim: str, x_dim: str, shape: tuple[int, int]
) -> np.ndarray | None:
    """The file's latitude or longitude on the (y, x) grid; None when the file has none."""
    for name in names:
        if name not in ds.variables:
            continue
        v = ds[name]
        values = np.asarray(v.values, dtype=np.float64)
        if v.dims == (y_dim, x_dim):
            return values
        if v.dims == (x_dim, y_dim):
            return values.T.copy()
        if v.ndim == 1 and v.dims[0] == y_dim:
            return np.broadcast_to(values[:, None], shape).copy()
        if v.ndim == 1 and v.dims[0] == x_dim:
            return np.broadcast_to(values[None, :], shape).copy()
        raise UserError(f"{path}: coordinate {name!r} has dims {v.dims}, which do not map onto ({y_dim}, {x_dim})")
    return None
