"""``hpc-seaice data verify``: check a data set end to end, and the value checks it is made of."""

from __future__ import annotations

import os

import h5py
import numpy as np
from tqdm import tqdm

from hpc_seaice.data.blocks import evenly_spaced, iter_blocks, read_block
from hpc_seaice.data.format.h5files import open_h5
from hpc_seaice.data.format.manifest import Manifest, check_variables, in_split, manifest_path, read_manifest, to_iso
from hpc_seaice.data.format.shards import check_shard_layout, shard_times
from hpc_seaice.data.format.static import read_static, static_path
from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import sha256_file


def check_values(
    block: np.ndarray,
    ocean: np.ndarray,
    manifest: Manifest,
    times: np.ndarray,
    where: str,
) -> None:
    """NaN in ocean cells, non-finite values on land, values outside the physical bounds."""
    land = ~ocean
    for c, name in enumerate(manifest.variables):
        x = block[:, c]
        xo = x[:, ocean]
        bad = ~np.isfinite(xo)
        if bad.any():
            k = int(np.nonzero(bad.any(axis=1))[0][0])
            kind = "NaN" if np.isnan(xo[k]).any() else "infinite values"
            raise UserError(f"{where}: {kind} in ocean cells of {name} at {to_iso(times[k])}")
        if land.any() and not np.isfinite(x[:, land]).all():
            raise UserError(f"{where}: non-finite values on land cells of {name} (land must be 0)")
        lo, hi = manifest.lower[c], manifest.upper[c]
        if xo.size and (xo.min() < lo or xo.max() > hi):
            k = int(np.nonzero(((xo < lo) | (xo > hi)).any(axis=1))[0][0])
            v = xo[k][(xo[k] < lo) | (xo[k] > hi)][0]
            raise UserError(f"{where}: {name} value {v:g} at {to_iso(times[k])} outside bounds [{lo:g}, {hi:g}]")


def check_logvar(f: h5py.File, sl: slice, times: np.ndarray, where: str) -> None:
    """A latent shard's posterior log-variances of samples ``sl`` are readable and finite."""
    logvar = read_block(f, "logvar", sl, where)
    bad = ~np.isfinite(logvar.reshape(len(logvar), -1)).all(axis=1)
    if bad.any():
        at = to_iso(times[int(np.argmax(bad))])
        raise UserError(f"{where}: NaN or infinite values in the posterior log-variance (logvar) at {at}")


def split_counts(path: str | os.PathLike, manifest: Manifest | None = None) -> dict[str, int]:
    """Samples per split from the shards' time arrays (opens each shard briefly)."""
    manifest = manifest or read_manifest(path)
    root = manifest_path(path).parent
    times = []
    for info in manifest.shards:
        with open_h5(root / info.file) as f:
            times.append(shard_times(f))
    t = np.concatenate(times) if times else np.zeros(0, "datetime64[s]")
    return {name: int(in_split(t, span).sum()) for name, span in manifest.splits.items()}


def verify_dataset(
    path: str | os.PathLike,
    *,
    progress: bool | None = None,
    hashes: bool = True,
    max_shards: int | None = None,
    samples_per_shard: int | None = None,
) -> None:
    """Check a data set end to end; the first problem found is raised as a one-line UserError.

    Checks: manifest schema and variables, static file (mask, lat/lon, stats shape), every shard
    (readable HDF5, layout, shape, variables, sha256, strictly increasing times inside the shard's
    span) and every value (no NaN in ocean cells, finite land, physical bounds; a latent set's
    log-variances finite), and that every
    split holds at least one sample. The cheap form that training runs at start: ``hashes=False``,
    ``max_shards`` evenly spaced shards (first and last included) and the first
    ``samples_per_shard`` samples of each; the split check then needs every shard and is skipped.
    """
    root = manifest_path(path).parent
    manifest = read_manifest(path)
    if manifest.kind == "fields":
        check_variables(manifest.variables, VARIABLES, str(manifest_path(path)))
    if not manifest.shards:
        raise UserError(f"{manifest_path(path)}: lists no shards")
    static = read_static(root)
    spath = static_path(root)
    grid = tuple(manifest.grid)
    for key in ("mask", "lat", "lon"):
        arr = getattr(static, key)
        if arr.shape != grid:
            raise UserError(f"{spath}: {key} shape {arr.shape} != grid {grid} of the manifest")
        if not np.isfinite(arr).all():
            raise UserError(f"{spath}: {key} has non-finite values")
    if static.mean is None or static.std is None:
        raise UserError(f"{spath}: missing normalisation statistics; run hpc-seaice data stats {root}")
    for key in ("mean", "std"):
        arr = getattr(static, key)
        if arr.shape != (manifest.num_channels,):
            raise UserError(f"{spath}: {key} shape {arr.shape} != ({manifest.num_channels},)")
    if not (np.all(np.isfinite(static.std)) and np.all(static.std > 0)):
        raise UserError(f"{spath}: std must be finite and positive, got {static.std.tolist()}")
    ocean = static.mask > 0.5
    if not ocean.any():
        raise UserError(f"{spath}: mask has no ocean cell")

    all_times = []
    c, h, w = manifest.num_channels, *manifest.grid
    chosen = manifest.shards
    if max_shards is not None and len(chosen) > max_shards:
        chosen = [chosen[i] for i in evenly_spaced(len(chosen), max(max_shards, 1))]
    for info in tqdm(chosen, desc="verify", unit="shard", disable=None if progress is None else not progress):
        spath_i = root / info.file
        where = str(spath_i)
        if not spath_i.is_file():
            raise UserError(f"{where}: shard listed in the manifest is missing")
        with open_h5(spath_i) as f:
            check_shard_layout(f, info, manifest, where)
            try:
                times = shard_times(f)
            except OSError as exc:
                raise UserError(f"{where}: cannot read time ({str(exc).splitlines()[0]})") from None
        digest = sha256_file(spath_i) if hashes else info.sha256
        if digest != info.sha256:
            raise UserError(f"{where}: sha256 mismatch (manifest {info.sha256[:12]}..., file {digest[:12]}...)")
        if np.any(np.diff(times.astype("int64")) <= 0):
            raise UserError(f"{where}: time is not strictly increasing")
        if to_iso(times[0]) != info.time_start or to_iso(times[-1]) != info.time_end:
            raise UserError(f"{where}: time span {to_iso(times[0])}..{to_iso(times[-1])} != manifest")
        with open_h5(spath_i) as f:
            count = info.count if samples_per_shard is None else min(info.count, samples_per_shard)
            for sl in iter_blocks(count, c * h * w * 4):
                block = read_block(f, "fields", sl, where)
                check_values(block, ocean, manifest, times[sl], where)
                if manifest.kind == "latent":  # latent training reads sigma = exp(logvar / 2) beside the means
                    check_logvar(f, sl, times[sl], where)
        all_times.append(times)
    if chosen is not manifest.shards:
        return
    t = np.concatenate(all_times)
    for name, span in manifest.splits.items():
        if not in_split(t, span).any():
            raise UserError(
                f"{manifest_path(path)}: split {name} ({span[0]}..{span[1]}) has no samples; data cover "
                f"{manifest.time_start}..{manifest.time_end}"
            )
