"""Sharded HDF5 data sets: the manifest, shard files, the static file, and their verification.

A data set is a folder (DESIGN section 3)::

    manifest.json      format version, variables, units, bounds, grid, shards (+ sha256), splits
    static.h5          mask (1 = ocean), lat, lon, normalisation statistics
    shard-00000.h5     fields [N, C, H, W] float32 chunked (1, C, H, W); time [N] int64 seconds

Why this layout: one sample per chunk and no compression lets a reader fetch a sample with one
contiguous read; many medium-sized files spread over parallel file systems and let several ranks
write at once (one ``shard_prefix`` per rank, no parallel HDF5 needed); the manifest is written
last, so a folder without a manifest is an unfinished write, never a silently partial data set.
Every file is written to a temporary name and renamed, so a crash never leaves a half file under
a real name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Readers and writers never need POSIX locks; Lustre/GPFS/NFS often do not provide them.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from hpc_seaice.data.variables import VARIABLES  # noqa: E402
from hpc_seaice.errors import UserError  # noqa: E402

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
STATIC_NAME = "static.h5"
KINDS = ("fields", "latent")
TIME_UNITS = "seconds since 1970-01-01 00:00:00"
DEFAULT_SPLITS: dict[str, list[str]] = {
    "train": ["2009-01-01", "2016-12-31"],
    "validation": ["2017-01-01", "2017-12-31"],
    "test": ["2018-01-01", "2018-12-31"],
}
_HASH_BLOCK = 8 << 20


# --------------------------------------------------------------------------------------------
# manifest


@dataclass
class ShardInfo:
    """One shard file: its name inside the data set folder, sample count, hash and time span."""

    file: str
    count: int
    sha256: str
    time_start: str
    time_end: str


@dataclass
class Manifest:
    """The index of a data set (``manifest.json``); see the module docstring."""

    format_version: int
    kind: str
    variables: list[str]
    units: list[str]
    lower: list[float]
    upper: list[float]
    grid: list[int]
    shards: list[ShardInfo]
    time_start: str
    time_end: str
    splits: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_SPLITS.items()})
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def num_channels(self) -> int:
        return len(self.variables)


def _bound_to_json(value: float) -> float | str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _bound_from_json(value: Any, where: str) -> float:
    if isinstance(value, str):
        if value in ("inf", "+inf", "-inf"):
            return float(value)
        raise UserError(f"{where}: bound {value!r} is neither a number nor 'inf'/'-inf'")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise UserError(f"{where}: bound {value!r} is neither a number nor 'inf'/'-inf'")


def manifest_path(path: str | os.PathLike) -> Path:
    """``path`` may be the data set folder or the manifest file itself."""
    p = Path(path)
    return p / MANIFEST_NAME if p.is_dir() or p.suffix != ".json" else p


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    d = asdict(manifest)
    d["lower"] = [_bound_to_json(v) for v in manifest.lower]
    d["upper"] = [_bound_to_json(v) for v in manifest.upper]
    return d


def manifest_from_dict(d: dict[str, Any], where: str = "manifest") -> Manifest:
    """Build a :class:`Manifest` from parsed JSON; every problem is a one-line UserError."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a JSON object")
    required = [
        "format_version",
        "kind",
        "variables",
        "units",
        "lower",
        "upper",
        "grid",
        "shards",
        "time_start",
        "time_end",
    ]
    missing = [k for k in required if k not in d]
    if missing:
        raise UserError(f"{where}: missing key(s) {', '.join(missing)}")
    if d["format_version"] != FORMAT_VERSION:
        raise UserError(f"{where}: format_version {d['format_version']!r} is not supported (expected {FORMAT_VERSION})")
    if d["kind"] not in KINDS:
        raise UserError(f"{where}: kind {d['kind']!r} is not one of {', '.join(KINDS)}")
    n = len(d["variables"])
    for key in ("units", "lower", "upper"):
        if len(d[key]) != n:
            raise UserError(f"{where}: {key} has {len(d[key])} entries for {n} variables")
    grid = d["grid"]
    if not (isinstance(grid, list) and len(grid) == 2 and all(isinstance(g, int) and g > 0 for g in grid)):
        raise UserError(f"{where}: grid {grid!r} is not [H, W] with positive integers")
    shards = []
    for i, s in enumerate(d["shards"]):
        try:
            shards.append(ShardInfo(**s))
        except TypeError as exc:
            raise UserError(f"{where}: shard entry {i} is malformed ({exc})") from None
        name = shards[-1].file
        if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise UserError(f"{where}: shard entry {i} file {name!r} is not a file inside the data set folder")
    splits = d.get("splits", DEFAULT_SPLITS)
    for name, span in splits.items():
        if not (isinstance(span, list) and len(span) == 2):
            raise UserError(f"{where}: split {name!r} must be [start, end], got {span!r}")
        split_bounds(span, f"{where}: split {name!r}")
    return Manifest(
        format_version=int(d["format_version"]),
        kind=d["kind"],
        variables=[str(v) for v in d["variables"]],
        units=[str(u) for u in d["units"]],
        lower=[_bound_from_json(v, where) for v in d["lower"]],
        upper=[_bound_from_json(v, where) for v in d["upper"]],
        grid=[int(g) for g in grid],
        shards=shards,
        time_start=str(d["time_start"]),
        time_end=str(d["time_end"]),
        splits={k: [str(v[0]), str(v[1])] for k, v in splits.items()},
        source=dict(d.get("source", {})),
    )


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read ``manifest.json`` of a data set folder (or the file itself)."""
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise UserError(f"{mpath}: missing manifest; not a data set (create one with hpc-seaice data synth or convert)")
    try:
        data = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{mpath}: not valid JSON ({exc})") from None
    return manifest_from_dict(data, str(mpath))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(path: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp + rename); returns its path."""
    mpath = manifest_path(path)
    text = json.dumps(manifest_to_dict(manifest), indent=1) + "\n"
    _atomic_write_bytes(mpath, text.encode())
    return mpath


def build_manifest(
    *,
    kind: str,
    variables: Sequence[str],
    units: Sequence[str],
    lower: Sequence[float],
    upper: Sequence[float],
    grid: Sequence[int],
    shards: Sequence[ShardInfo],
    splits: dict[str, list[str]] | None = None,
    source: dict[str, Any] | None = None,
) -> Manifest:
    """A manifest over ``shards`` (sorted by time), with the overall time range filled in."""
    if not shards:
        raise ValueError("a manifest needs at least one shard")
    ordered = sorted(shards, key=lambda s: (np.datetime64(s.time_start), s.file))
    return Manifest(
        format_version=FORMAT_VERSION,
        kind=kind,
        variables=list(variables),
        units=list(units),
        lower=[float(v) for v in lower],
        upper=[float(v) for v in upper],
        grid=[int(g) for g in grid],
        shards=list(ordered),
        time_start=min(s.time_start for s in ordered),
        time_end=max(s.time_end for s in ordered),
        splits={k: list(v) for k, v in (splits or DEFAULT_SPLITS).items()},
        source=dict(source or {}),
    )


LAYOUT_KEYS = ("kind", "variables", "units", "lower", "upper", "grid")  # what every shard of a set shares


def _layout(obj: Any) -> dict[str, Any]:
    """The :data:`LAYOUT_KEYS` of a manifest or a shard writer, as keyword arguments."""
    return {k: getattr(obj, k) for k in LAYOUT_KEYS}


def merge_manifests(manifests: Sequence[Manifest]) -> Manifest:
    """One manifest from per-rank partial manifests written into the same folder.

    All parts must agree on kind, variables, units, bounds and grid; shard names must be unique
    (give each rank's :class:`ShardWriter` its own ``shard_prefix``).
    """
    if not manifests:
        raise ValueError("nothing to merge")
    first = manifests[0]
    for m in manifests[1:]:
        for k in LAYOUT_KEYS:
            if getattr(m, k) != getattr(first, k):
                raise ValueError(f"cannot merge manifests: {k} differs ({getattr(m, k)} != {getattr(first, k)})")
    shards = [s for m in manifests for s in m.shards]
    names = [s.file for s in shards]
    if len(set(names)) != len(names):
        raise ValueError("cannot merge manifests: duplicate shard file names (use distinct shard_prefix)")
    return build_manifest(**_layout(first), shards=shards, splits=first.splits, source=first.source)


# --------------------------------------------------------------------------------------------
# time and splits


def to_iso(t: np.datetime64) -> str:
    return str(np.datetime64(t, "s"))


def split_bounds(span: Sequence[str], where: str = "split") -> tuple[np.datetime64, np.datetime64]:
    """Inclusive [start, end] ISO strings -> half-open [lo, hi) datetime64[s].

    A date without a time of day covers that whole day, so ``2016-12-31`` includes 18:00 UTC.
    """
    try:
        lo = np.datetime64(span[0], "s")
        end = np.datetime64(span[1], "s")
    except ValueError:
        raise UserError(f"{where}: {list(span)!r} is not a pair of ISO dates") from None
    hi = end + np.timedelta64(1, "D") if len(str(span[1]).strip()) <= 10 else end + np.timedelta64(1, "s")
    if hi <= lo:
        raise UserError(f"{where}: end {span[1]} is before start {span[0]}")
    return lo, hi


def in_split(times: np.ndarray, span: Sequence[str]) -> np.ndarray:
    """Boolean mask of ``times`` (datetime64) inside the inclusive split ``span``."""
    lo, hi = split_bounds(span)
    t = times.astype("datetime64[s]")
    return (t >= lo) & (t < hi)


# --------------------------------------------------------------------------------------------
# shard files


def h5_file(path: str | os.PathLike, mode: str = "r", **kwargs: Any) -> h5py.File:
    """``h5py.File`` without POSIX file locks (Lustre/GPFS/NFS often lack them).

    HDF5 refuses to open a file twice in one process with different locking flags. This project
    opens files with ``locking=False`` (the contract's HDF5_USE_FILE_LOCKING=FALSE, which the
    Makefile and launch scripts also export, making it h5py's default too); only if that clashes
    with a handle someone else opened with locks is the process default used instead.
    """
    try:
        return h5py.File(path, mode, locking=False, **kwargs)
    except OSError as exc:
        if "lock" not in str(exc).lower():
            raise
        return h5py.File(path, mode, **kwargs)


def open_h5(path: str | os.PathLike, mode: str = "r", **kwargs: Any) -> h5py.File:
    """Open an HDF5 file for reading; a missing, truncated or corrupt file is a one-line UserError."""
    try:
        return h5_file(path, mode, **kwargs)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read HDF5 file, truncated or corrupt ({reason})") from None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


class ShardWriter:
    """Append samples to ``<prefix>-00000.h5``, ``<prefix>-00001.h5``, ... of ``shard_size`` each.

    Samples go straight to disk (a shard is filled incrementally, never held in memory), so
    memory stays bounded by one ``write`` call. A shard is written under a temporary name and
    renamed once complete and hashed. Several writers (one per rank, each with its own
    ``shard_prefix``) may write into one folder; :func:`merge_manifests` joins their results.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        kind: str,
        variables: Sequence[str],
        units: Sequence[str],
        lower: Sequence[float],
        upper: Sequence[float],
        grid: Sequence[int],
        shard_size: int,
        shard_prefix: str = "shard",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if shard_size < 1:
            raise UserError(f"--shard-size: must be >= 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.variables = list(variables)
        self.units = list(units)
        self.lower = [float(v) for v in lower]
        self.upper = [float(v) for v in upper]
        self.grid = [int(g) for g in grid]
        self.shard_size = int(shard_size)
        self.shard_prefix = shard_prefix
        self.shards: list[ShardInfo] = []
        self._file: h5py.File | None = None
        self._tmp: Path | None = None
        self._name = ""
        self._n = 0
        self._last_time: np.datetime64 | None = None
        self._closed = False

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (len(self.variables), self.grid[0], self.grid[1])

    def _open_shard(self, with_logvar: bool) -> None:
        self._name = f"{self.shard_prefix}-{len(self.shards):05d}.h5"
        self._tmp = self.out_dir / f".{self._name}.tmp-{os.getpid()}"
        f = h5_file(self._tmp, "w")
        c, h, w = self.sample_shape
        for name in ("fields", "logvar") if with_logvar else ("fields",):
            d = f.create_dataset(
                name, shape=(0, c, h, w), maxshape=(self.shard_size, c, h, w), chunks=(1, c, h, w), dtype="f4"
            )
            d.attrs["variables"] = self.variables
        t = f.create_dataset("time", shape=(0,), maxshape=(self.shard_size,), dtype="i8")
        t.attrs["units"] = TIME_UNITS
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["kind"] = self.kind
        self._file = f
        self._n = 0

    def _close_shard(self) -> None:
        if self._file is None:
            return
        times = self._file["time"][:]
        self._file.close()
        self._file = None
        assert self._tmp is not None
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
        if fields.shape[1:] != self.sample_shape:
            raise ValueError(f"fields shape {fields.shape[1:]} != expected {self.sample_shape}")
        time = np.atleast_1d(np.asarray(time).astype("datetime64[s]"))
        if time.shape != (fields.shape[0],):
            raise ValueError(f"time shape {time.shape} != ({fields.shape[0]},)")
        if logvar is not None:
            logvar = np.asarray(logvar).reshape(fields.shape)
        if self.kind == "latent" and logvar is None:
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
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()
        self._closed = True

    def build_manifest(
        self,
        shards: Sequence[ShardInfo] | None = None,
        splits: dict[str, list[str]] | None = None,
        source: dict[str, Any] | None = None,
    ) -> Manifest:
        """A manifest with this writer's metadata over ``shards`` (default: its own)."""
        return build_manifest(
            **_layout(self), shards=self.shards if shards is None else shards, splits=splits, source=source
        )

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def fields_writer(out_dir: str | os.PathLike, grid: Sequence[int], shard_size: int) -> ShardWriter:
    """A writer of the five sea-ice variables (fixed order, units and physical bounds)."""
    from hpc_seaice.data.variables import BOUNDS, UNITS, VARIABLES

    return ShardWriter(
        out_dir,
        kind="fields",
        variables=VARIABLES,
        units=[UNITS[v] for v in VARIABLES],
        lower=[BOUNDS[v][0] for v in VARIABLES],
        upper=[BOUNDS[v][1] for v in VARIABLES],
        grid=list(grid),
        shard_size=shard_size,
    )


def prepare_output_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """Create ``out``; refuse a folder holding a data set unless ``overwrite``.

    With ``overwrite`` only data set files are removed (manifest, static, shards, temporaries),
    never anything else a user may keep there.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    ours = [p for p in out.iterdir() if _is_dataset_file(p.name)]
    if ours and not overwrite:
        raise UserError(f"{out}: already holds a data set; pass --overwrite to replace it")
    for p in ours:
        p.unlink()
    return out


def _is_dataset_file(name: str) -> bool:
    """Manifest, static file, shards (``<prefix>-NNNNN.h5``) and our temporaries."""
    return (
        name in (MANIFEST_NAME, STATIC_NAME)
        or re.fullmatch(r".+-\d{5}\.h5", name) is not None
        or (name.startswith(".") and ".tmp-" in name)
    )


# --------------------------------------------------------------------------------------------
# static file


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
) -> Path:
    """Write ``static.h5`` (``path`` = folder or file) atomically; mask 1 = ocean."""
    spath = static_path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError("mask must be 2-D")
    if np.asarray(lat).shape != mask.shape or np.asarray(lon).shape != mask.shape:
        raise ValueError("lat/lon must have the mask's shape")
    tmp = spath.with_name(f".{spath.name}.tmp-{os.getpid()}")
    with h5_file(tmp, "w") as f:
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
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        f.attrs["format_version"] = FORMAT_VERSION
    os.replace(tmp, spath)
    return spath


def read_static(path: str | os.PathLike) -> Static:
    """Read ``static.h5`` of a data set folder (or the file itself)."""
    spath = static_path(path)
    if not spath.is_file():
        raise UserError(f"{spath}: missing static file (mask, lat/lon, statistics)")
    with open_h5(spath) as f:
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
        except OSError as exc:
            raise UserError(f"{spath}: cannot read ({str(exc).splitlines()[0]})") from None
    return Static(mask=mask, lat=lat, lon=lon, mean=mean, std=std, summary=summary, attrs=attrs)


# --------------------------------------------------------------------------------------------
# verification


def check_variables(found: Sequence[str], expected: Sequence[str], where: str) -> None:
    """One line naming missing/extra variables, or the order problem."""
    found, expected = list(found), list(expected)
    if found == expected:
        return
    missing = [v for v in expected if v not in found]
    extra = [v for v in found if v not in expected]
    parts = []
    if missing:
        parts.append(f"missing variable(s) {', '.join(missing)}")
    if extra:
        parts.append(f"extra variable(s) {', '.join(extra)}")
    if not parts:
        parts.append(f"variables in order {', '.join(found)}, expected {', '.join(expected)}")
    raise UserError(f"{where}: {'; '.join(parts)}")


def check_shard_layout(f: h5py.File, info: ShardInfo, manifest: Manifest, where: str) -> None:
    """Datasets, shape, dtype and variable names of one open shard against the manifest."""
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


def iter_blocks(n: int, sample_bytes: int, target_bytes: int = 64 << 20) -> Iterator[slice]:
    """Slices of ``range(n)`` holding about ``target_bytes`` each (bounded memory scans)."""
    step = max(1, target_bytes // max(1, sample_bytes))
    for lo in range(0, n, step):
        yield slice(lo, min(n, lo + step))


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
    span) and every value (no NaN in ocean cells, finite land, physical bounds), and that every
    split holds at least one sample. The cheap form that training runs at start: ``hashes=False``,
    ``max_shards`` evenly spaced shards (first and last included) and the first
    ``samples_per_shard`` samples of each; the split check then needs every shard and is skipped.
    """
    from tqdm import tqdm

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
        picks = np.unique(np.linspace(0, len(chosen) - 1, max(max_shards, 1)).round().astype(int))
        chosen = [chosen[i] for i in picks]
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
            d = f["fields"]
            count = info.count if samples_per_shard is None else min(info.count, samples_per_shard)
            for sl in iter_blocks(count, c * h * w * 4):
                try:
                    block = d[sl]
                except OSError as exc:
                    raise UserError(f"{where}: cannot read fields, truncated or corrupt ({exc})") from None
                check_values(block, ocean, manifest, times[sl], where)
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


def cli_verify(args: Any) -> int:
    """``hpc-seaice data verify DIR``."""
    verify_dataset(args.path)
    manifest = read_manifest(args.path)
    counts = split_counts(args.path, manifest)
    per_split = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"{args.path}: OK ({manifest.num_samples} samples in {len(manifest.shards)} shards; {per_split})")
    return 0
