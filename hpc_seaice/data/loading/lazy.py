"""A data set as a lazy ``xarray.Dataset`` (dask arrays over the HDF5 shards), for notebooks.

Nothing is read when the data set is opened: each shard's ``fields`` array becomes one dask
array with one chunk per sample (the file's own chunking), the shards are concatenated along
``time``, and a split is a selection on ``time``. Values come back in physical units for a
field data set and as the stored latent means for a latent data set, exactly as in the shards.
The HDF5 files stay open while the returned data set lives; ``ds.close()`` closes them.

The grid is described as in a samples file (:mod:`hpc_seaice.data.format.samples_file`): 2-D
``lat``/``lon``, the ocean ``mask``, and on the project's polar stereographic grid the projected
``x``, ``y`` in metres with the CF ``polar_stereographic`` grid mapping, so a data set and the
samples of a model trained on it align with ``xarray.align`` and plot on a map as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from hpc_seaice.data.format.h5files import open_h5
from hpc_seaice.data.format.manifest import TIME_UNITS, in_split, read_manifest
from hpc_seaice.data.format.samples_file import grid_coords, mask_variable, variable_attrs, with_grid_mapping
from hpc_seaice.data.format.static import read_static
from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.errors import UserError


def _time_values(seconds: np.ndarray) -> np.ndarray:
    return np.asarray(seconds, dtype="int64").astype("datetime64[s]").astype("datetime64[ns]")


def _field_attrs(name: str, units: str) -> dict[str, object]:
    """A stored field's CF attributes: its units from the manifest, names as in a samples file
    (no valid range: that is a claim about generated values, which the samples file checks)."""
    if name not in VARIABLES:
        return {"units": units}
    attrs = variable_attrs(name)
    attrs.pop("valid_min", None)
    attrs.pop("valid_max", None)
    return {**attrs, "units": units}


def open_dataset(path: str | os.PathLike, split: str | None = None) -> xr.Dataset:
    """Open the sharded data set at ``path`` lazily; ``split`` selects a split of its manifest.

    Field data sets have one variable per field (``sit``, ``sic``, ...) with dims
    (time, y, x); latent data sets have one variable ``latent`` (time, channel, y, x). ``mask``,
    ``lat`` and ``lon`` come from ``static.h5``; ``x``, ``y`` and the grid mapping as in a samples
    file.
    """
    root = Path(path)
    manifest = read_manifest(root)
    static = read_static(root)
    if split is not None and split not in manifest.splits:
        raise UserError(f"{root}: no split {split!r} (splits: {', '.join(manifest.splits)})")
    files, arrays, times = [], [], []
    for shard in manifest.shards:
        f = open_h5(root / shard.file)
        files.append(f)
        fields = f["fields"]
        arrays.append(da.from_array(fields, chunks=(1, *fields.shape[1:])))
        times.append(f["time"][()])
    data = da.concatenate(arrays, axis=0)
    time = _time_values(np.concatenate(times))
    coords = {"time": ("time", time), **grid_coords(static.lat, static.lon)}
    if manifest.kind == "fields":
        variables = {
            name: (("time", "y", "x"), data[:, c], _field_attrs(name, manifest.units[c]))
            for c, name in enumerate(manifest.variables)
        }
    else:
        variables = {"latent": (("time", "channel", "y", "x"), data)}
    variables["mask"] = mask_variable(static.mask)
    attrs = {"Conventions": "CF-1.8", "source": str(root.resolve()), "kind": manifest.kind}
    ds = with_grid_mapping(xr.Dataset(variables, coords=coords, attrs=attrs))
    ds["time"].encoding["units"] = TIME_UNITS
    ds.set_close(lambda: [f.close() for f in files])
    keep = np.ones(len(time), bool) if split is None else in_split(time, manifest.splits[split])
    selected = np.flatnonzero(keep)
    ds = ds.isel(time=selected[np.argsort(time[selected], kind="stable")])  # time order, as the trainer reads
    if split is not None:
        ds.attrs["split"] = split
    return ds
