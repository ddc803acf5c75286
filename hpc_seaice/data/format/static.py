"""``static.h5`` of a data set: the land mask, coordinates, cell geometry and normalisation statistics."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.h5files import H5Create, check_self_contained, open_h5
from hpc_seaice.data.format.manifest import FORMAT_VERSION
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import atomic_target

STATIC_NAME = "static.h5"
GEOMETRY_KEYS = ("cell_area", "dx", "dy")  # optional [H, W] datasets of static.h5 (m^2, m, m)


@dataclass
class Static:
    """Contents of ``static.h5``: the land mask, coordinates and normalisation statistics.

    ``summary`` holds per-variable statistics of the training split beyond mean/std (min, max,
    fraction at the lower/upper bound, count) when they were computed with the stats.
    """

    mask: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    summary: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    cell_area: np.ndarray | None = None  # [H, W] m^2, when the data set stores it
    dx: np.ndarray | None = None  # [H, W] m, spacing along x (columns)
    dy: np.ndarray | None = None  # [H, W] m, spacing along y (rows)
    pc1_std: float | None = None  # std of the leading principal component of the normalised train split


def static_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p / STATIC_NAME if p.is_dir() or p.suffix != ".h5" else p


def write_static(
    path: str | os.PathLike,
    mask: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    *,
    summary: dict[str, np.ndarray] | None = None,
    attrs: dict[str, Any] | None = None,
    cell_area: np.ndarray | None = None,
    dx: np.ndarray | None = None,
    dy: np.ndarray | None = None,
) -> Path:
    """Write ``static.h5`` (``path`` = folder or file) atomically; mask 1 = ocean.

    ``cell_area`` (m^2), ``dx``, ``dy`` (m), given with the mask's shape, are the true cell sizes.
    """
    spath = static_path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError("mask must be 2-D")
    if np.asarray(lat).shape != mask.shape or np.asarray(lon).shape != mask.shape:
        raise ValueError("lat/lon must have the mask's shape")
    with atomic_target(spath) as tmp, H5Create(tmp, str(spath)) as f:
        f.create_dataset("mask", data=(mask > 0.5).astype(np.uint8))
        f.create_dataset("lat", data=np.asarray(lat, dtype=np.float32))
        f.create_dataset("lon", data=np.asarray(lon, dtype=np.float32))
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std or neither")
        if mean is not None and std is not None:
            f.create_dataset("mean", data=np.asarray(mean, dtype=np.float64))
            f.create_dataset("std", data=np.asarray(std, dtype=np.float64))
        if summary:
            g = f.create_group("summary")
            for k, v in summary.items():
                g.create_dataset(k, data=np.asarray(v))
        for key, arr in zip(GEOMETRY_KEYS, (cell_area, dx, dy)):
            if arr is not None:
                if np.shape(arr) != mask.shape:
                    raise ValueError(f"{key} must have the mask's shape")
                f.create_dataset(key, data=np.asarray(arr, dtype=np.float64))
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        f.attrs["format_version"] = FORMAT_VERSION
    return spath


def read_static(path: str | os.PathLike) -> Static:
    """Read ``static.h5`` of a data set folder (or the file itself)."""
    spath = static_path(path)
    if not spath.is_file():
        raise UserError(f"{spath}: missing static file (mask, lat/lon, statistics)")
    with open_h5(spath) as f:
        check_self_contained(f, str(spath))
        for key in ("mask", "lat", "lon"):
            if key not in f:
                raise UserError(f"{spath}: missing dataset {key!r}")
        try:
            mask = f["mask"][()].astype(np.float32)
            lat = f["lat"][()].astype(np.float32)
            lon = f["lon"][()].astype(np.float32)
            mean = f["mean"][()].astype(np.float64) if "mean" in f else None
            std = f["std"][()].astype(np.float64) if "std" in f else None
            summary = {k: f["summary"][k][()] for k in f["summary"]} if "summary" in f else {}
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            geometry = {k: f[k][()].astype(np.float64) if k in f else None for k in GEOMETRY_KEYS}
        except OSError as exc:
            raise UserError(f"{spath}: cannot read ({str(exc).splitlines()[0]})") from None
    pc1 = float(attrs["pc1_std"]) if "pc1_std" in attrs else None
    return Static(mask, lat, lon, mean, std, summary, attrs, pc1_std=pc1, **geometry)
