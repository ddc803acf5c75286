"""Per-cell spacings and areas of a curvilinear grid, from the data set or from its lat/lon.

Why: the pan-Arctic grid's cells are not equal (a polar stereographic grid's cells shrink
away from the latitude of true scale), so areas (MIZ area) and derivatives (deformation) need
each cell's own size instead of one nominal spacing. A data set's ``static.h5`` may carry
``cell_area`` (m^2), ``dx`` and ``dy`` (m); when it does not, they are derived here from the
cell-centre latitudes and longitudes with great-circle distances on a sphere.

Conventions: axis -1 (columns) is x, axis -2 (rows) is y. ``dx[i, j]`` is the distance spanned by
one column step at cell (i, j): half the distance between the two neighbours (j - 1, j + 1)
inside the grid and the distance to the one neighbour on the grid border, which is exactly the
divisor of the centred/one-sided index difference of ``np.gradient``. ``cell_area = dx * dy``
(the grid is taken as locally orthogonal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpc_seaice.data.format.static import Static

EARTH_RADIUS_M = 6_371_000.0  # mean Earth radius (the sphere the distances are taken on)


@dataclass
class CellGeometry:
    """Spacings ``dx``, ``dy`` (m) and areas (m^2) of every cell, all ``[H, W]``, and where they came from."""

    dx: np.ndarray
    dy: np.ndarray
    cell_area: np.ndarray
    source: str  # "static" (stored in the data set) or "lat/lon" (derived here)

    def mean_spacing_km(self, box: tuple[slice, slice] | None = None) -> float:
        """Mean of sqrt(cell_area) inside ``box`` (the whole grid by default), in km."""
        area = self.cell_area if box is None else self.cell_area[box[0], box[1]]
        return float(np.sqrt(area).mean() / 1000.0)


def great_circle_m(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Haversine distance in m between points given in degrees (stable for short distances)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - lon1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _spacing_along(lat: np.ndarray, lon: np.ndarray, axis: int) -> np.ndarray:
    lat = np.moveaxis(np.asarray(lat, dtype=np.float64), axis, -1)
    lon = np.moveaxis(np.asarray(lon, dtype=np.float64), axis, -1)
    n = lat.shape[-1]
    if n < 2:
        raise ValueError("a grid needs at least 2 cells along each axis to derive spacings")
    step = great_circle_m(lat[..., :-1], lon[..., :-1], lat[..., 1:], lon[..., 1:])  # [.., n - 1]
    out = np.empty_like(lat)
    out[..., 0] = step[..., 0]
    out[..., -1] = step[..., -1]
    if n > 2:
        out[..., 1:-1] = 0.5 * great_circle_m(lat[..., :-2], lon[..., :-2], lat[..., 2:], lon[..., 2:])
    return np.moveaxis(out, -1, axis)


def geometry_from_lat_lon(lat: np.ndarray, lon: np.ndarray) -> CellGeometry:
    """``dx``, ``dy`` and ``cell_area`` of a grid from its cell-centre lat/lon (degrees)."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.ndim != 2 or lat.shape != lon.shape:
        raise ValueError(f"lat/lon must be 2-D and of one shape, got {lat.shape} and {lon.shape}")
    dx = _spacing_along(lat, lon, axis=-1)
    dy = _spacing_along(lat, lon, axis=-2)
    return CellGeometry(dx=dx, dy=dy, cell_area=dx * dy, source="lat/lon")


def nominal_geometry(shape: tuple[int, int], spacing_m: float) -> CellGeometry:
    """Equal square cells of side ``spacing_m``: the fallback when lat/lon say nothing usable."""
    dx = np.full(shape, float(spacing_m))
    return CellGeometry(dx=dx, dy=dx.copy(), cell_area=dx * dx, source=f"nominal {spacing_m / 1000:g} km")


def grid_geometry(static: Static, fallback_spacing_m: float | None = None) -> CellGeometry:
    """The data set's stored ``dx``, ``dy``, ``cell_area`` when present, else derived from lat/lon.

    A stored ``cell_area`` without spacings (or the other way round) is completed from lat/lon.
    Spacings that are not finite and positive everywhere (e.g. lat/lon that repeat a point)
    raise ``ValueError``, or give :func:`nominal_geometry` when ``fallback_spacing_m`` is set.
    """
    geometry = _stored_or_derived(static)  # a stored array of the wrong shape is an error, not a fallback
    for name, value in (("dx", geometry.dx), ("dy", geometry.dy), ("cell_area", geometry.cell_area)):
        if not (np.isfinite(value).all() and (value > 0).all()):
            if fallback_spacing_m is None:
                raise ValueError(f"{geometry.source} {name} is not finite and positive everywhere")
            return nominal_geometry(tuple(np.asarray(static.mask).shape), fallback_spacing_m)
    return geometry


def _stored_or_derived(static: Static) -> CellGeometry:
    stored = {"dx": static.dx, "dy": static.dy, "cell_area": static.cell_area}
    if all(v is None for v in stored.values()):
        return geometry_from_lat_lon(static.lat, static.lon)
    derived = None
    if any(v is None for v in stored.values()):
        derived = geometry_from_lat_lon(static.lat, static.lon)
    dx = np.asarray(stored["dx"] if stored["dx"] is not None else derived.dx, dtype=np.float64)
    dy = np.asarray(stored["dy"] if stored["dy"] is not None else derived.dy, dtype=np.float64)
    area = stored["cell_area"]
    area = dx * dy if area is None else np.asarray(area, dtype=np.float64)
    shape = np.asarray(static.mask).shape
    for name, value in (("dx", dx), ("dy", dy), ("cell_area", area)):
        if value.shape != shape:
            raise ValueError(f"static {name} has shape {value.shape}, the mask {shape}")
    return CellGeometry(dx=dx, dy=dy, cell_area=area, source="static")
