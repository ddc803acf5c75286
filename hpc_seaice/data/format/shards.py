"""Shard files of a data set: writing them (:class:`ShardWriter`) and checking one against the manifest.

Why this layout: one sample per chunk and no compression lets a reader fetch a sample with one
contiguous read; many medium-sized files spread over parallel file systems and let several ranks
write at once (one ``shard_prefix`` per rank, no parallel HDF5 needed). Every file is written to
a temporary name and renamed, so a crash never leaves a half file under a real name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpc_seaice.data.format.h5files import H5Create, check_self_contained
from hpc_seaice.data.format.manifest import (
    FORMAT_VERSION,
    TIME_UNITS,
    Layout,
    Manifest,
    ShardInfo,
    build_manifest,
    check_variables,
    to_iso,
)
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import sha256_file


class ShardWriter:
    """Append samples to ``<prefix>-00000.h5``, ``<prefix>-00001.h5``, ... of ``shard_size`` each.

    Samples go straight to disk (a shard is filled incrementally, never held in memory), so
    memory stays bounded by one ``write`` call. A shard is written under a temporary name and
    renamed once complete and hashed. Several writers (one per rank, each with its own
    ``shard_prefix``) may write into one folder; :func:`merge_manifests` joins their results.
    """

    def __init__(self, out_dir: str | Path, layout: Layout, shard_size: int, shard_prefix: str = "shard") -> None:
        if shard_size < 1:
            raise UserError(f"--shard-size: must be >= 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.layout = layout
        self.shard_size = int(shard_size)
        self.shard_prefix = shard_prefix
        self.shards: list[ShardInfo] = []
        self._file: h5py.File | None = None
        self._h5: H5Create | None = None
        self._tmp: Path | None = None
        self._name = ""
        self._n = 0
        self._last_time: np.datetime64 | None = None
        self._closed = False

    def _open_shard(self, with_logvar: bool) -> None:
        self._name = f"{self.shard_prefix}-{len(self.shards):05d}.h5"
        self._tmp = self.out_dir / f".{self._name}.tmp-{os.getpid()}"
        self._h5 = H5Create(self._tmp)
        f = self._h5.__enter__()
        c, h, w = self.layout.sample_shape
        for name in ("fields", "logvar") if with_logvar else ("fields",):
            d = f.create_dataset(
                name, shape=(0, c, h, w), maxshape=(self.shard_size, c, h, w), chunks=(1, c, h, w), dtype="f4"
            )
            d.attrs["variables"] = list(self.layout.variables)
        t = f.create_dataset("time", shape=(0,), maxshape=(self.shard_size,), dtype="i8")
        t.attrs["units"] = TIME_UNITS
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["kind"] = self.layout.kind
        self._file = f
        self._n = 0

    def _close_shard(self) -> None:
        if self._file is None:
            return
        assert self._tmp is not None and self._h5 is not None
        times = self._file["time"][:]
        self._file = None
        self._h5.close()  # a full disk: one line naming the file, raised after HDF5 closed it cleanly
        final = self.out_dir / self._name
        digest = sha256_file(self._tmp)
        os.replace(self._tmp, final)
        self.shards.append(
            ShardInfo(
                file=self._name,
                count=int(self._n),
                sha256=digest,
                time_start=to_iso(np.datetime64(int(times[0]), "s")),
                time_end=to_iso(np.datetime64(int(times[-1]), "s")),
            )
        )

    def write(self, fields: np.ndarray, time: np.ndarray, logvar: np.ndarray | None = None) -> None:
        """Append ``fields`` [N, C, H, W] with ``time`` [N] (datetime64, strictly increasing)."""
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        fields = np.asarray(fields)
        if fields.ndim == 3:
            fields = fields[None]
        if fields.shape[1:] != self.layout.sample_shape:
            raise ValueError(f"fields shape {fields.shape[1:]} != expected {self.layout.sample_shape}")
        time = np.atleast_1d(np.asarray(time).astype("datetime64[s]"))
        if time.shape != (fields.shape[0],):
            raise ValueError(f"time shape {time.shape} != ({fields.shape[0]},)")
        if logvar is not None:
            logvar = np.asarray(logvar).reshape(fields.shape)
        if self.layout.kind == "latent" and logvar is None:
            raise ValueError("latent shards need logvar")
        seconds = time.astype("int64")
        if np.any(np.diff(seconds) <= 0) or (
            self._last_time is not None and len(seconds) and seconds[0] <= self._last_time
        ):
            raise ValueError("time must be strictly increasing within a writer")
        i = 0
        while i < fields.shape[0]:
            if self._file is None:
                self._open_shard(logvar is not None)
            assert self._file is not None
            take = min(self.shard_size - self._n, fields.shape[0] - i)
            lo, hi = self._n, self._n + take
            names = [("fields", fields)] + ([("logvar", logvar)] if logvar is not None else [])
            for name, arr in names:
                d = self._file[name]
                d.resize(hi, axis=0)
                d[lo:hi] = np.ascontiguousarray(arr[i : i + take], dtype=np.float32)
            t = self._file["time"]
            t.resize(hi, axis=0)
            t[lo:hi] = seconds[i : i + take]
            self._n = hi
            i += take
            assert self._h5 is not None
            self._h5.check()  # stop at the first failed write, not after the whole shard
            if self._n == self.shard_size:
                self._close_shard()
        if len(seconds):
            self._last_time = int(seconds[-1])

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; returns every shard this writer wrote."""
        if not self._closed:
            self._close_shard()
            self._closed = True
        return list(self.shards)

    def abort(self) -> None:
        """Drop the shard being written (used when generation fails)."""
        if self._h5 is not None:
            self._h5.__exit__(RuntimeError)  # closed without raising its own write error
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._closed = True

    def build_manifest(
        self,
        shards: Sequence[ShardInfo] | None = None,
        splits: dict[str, list[str]] | None = None,
        source: dict[str, Any] | None = None,
    ) -> Manifest:
        """A manifest with this writer's metadata over ``shards`` (default: its own)."""
        return build_manifest(self.layout, self.shards if shards is None else shards, splits=splits, source=source)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def check_shard_layout(f: h5py.File, info: ShardInfo, manifest: Manifest, where: str) -> None:
    """Links, datasets, shape, dtype and variable names of one open shard against the manifest."""
    check_self_contained(f, where)
    if "fields" not in f or "time" not in f:
        raise UserError(f"{where}: missing dataset 'fields' or 'time'")
    d = f["fields"]
    names = d.attrs.get("variables")
    if names is not None:
        check_variables([str(n) for n in np.asarray(names).tolist()], manifest.variables, where)
    c = manifest.num_channels
    h, w = manifest.grid
    expected = (info.count, c, h, w)
    if d.shape != expected:
        if len(d.shape) == 4 and d.shape[1] != c and names is None:
            raise UserError(f"{where}: fields has {d.shape[1]} variables, manifest lists {c}")
        raise UserError(f"{where}: fields shape {d.shape} != expected {expected} (count, C, H, W)")
    if d.dtype != np.float32:
        raise UserError(f"{where}: fields dtype {d.dtype} != float32")
    if f["time"].shape != (info.count,):
        raise UserError(f"{where}: time shape {f['time'].shape} != ({info.count},)")
    if manifest.kind == "latent" and ("logvar" not in f or f["logvar"].shape != expected):
        raise UserError(f"{where}: latent shard needs logvar of shape {expected}")


def shard_times(f: h5py.File) -> np.ndarray:
    return f["time"][()].astype("int64").astype("datetime64[s]")
