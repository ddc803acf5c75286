"""A data set as a lazy ``xarray.Dataset`` (dask arrays over the HDF5 shards), for notebooks.

Nothing is read when the data set is opened: each shard's ``fields`` array becomes one dask
array with one chunk per sample (the file's own chunking), the shards are concatenated along
``time``, and a split is a selection on ``time``. Values come back in physical units for a
field data set and as the stored latent means for a latent data set, exactly as in the shards.
The HDF5 files stay open while the returned data set lives; ``ds.close()`` closes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from hpc_seaice.data.format.h5files import open_h5
from hpc_seaice.data.format.manifest import TIME_UNITS, in_split, read_manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.errors import UserError


def _time_values(seconds: np.ndarray) -> np.ndarray:
    return np.asarray(seconds, dtype="int64").astype("datetime64[s]").astype("datetime64[ns]")


def open_dataset(path: str | os.PathLike, split: str | None = None) -> xr.Dataset:
    """Open the sharded data set at ``path`` lazily; ``split`` selects a split of its manifest.

    Field data sets have one variable per field (``sit``, ``sic``, ...) with dims
    (time, y, x); latent data sets have one variable ``latent`` (time, channel, y, x). ``mask``,
    ``lat`` and ``lon`` come from ``static.h5``.
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
    coords = {
        "time": ("time", time),
        "lat": (("y", "x"), static.lat, {"units": "degrees_north"}),
        "lon": (("y", "x"), static.lon, {"units": "degrees_east"}),
    }
    if manifest.kind == "fields":
        variables = {
            name: (("time", "y", "x"), data[:, c], {"units": manifest.units[c]})
            for c, name in enumerate(manifest.variables)
        }
    else:
        variables = {"latent": (("time", "channel", "y", "x"), data)}
    variables["mask"] = (("y", "x"), static.mask.astype(np.uint8), {"long_name": "ocean mask (1 = ocean)"})
    ds = xr.Dataset(variables, coords=coords, attrs={"source": str(root.resolve()), "kind": manifest.kind})
    ds["time"].encoding["units"] = TIME_UNITS
    ds.set_close(lambda: [f.close() for f in files])
    keep = np.ones(len(time), bool) if split is None else in_split(time, manifest.splits[split])
    selected = np.flatnonzero(keep)
    ds = ds.isel(time=selected[np.argsort(time[selected], kind="stable")])  # time order, as the trainer reads
    if split is not None:
        ds.attrs["split"] = split
    return ds
