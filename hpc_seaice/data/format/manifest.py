"""The index of a sharded HDF5 data set: ``manifest.json``, its schema, splits and time spans.

A data set is a folder::

    manifest.json      format version, variables, units, bounds, grid, shards (+ sha256), splits
    static.h5          mask (1 = ocean), lat, lon, cell areas and spacings, normalisation statistics
    shard-00000.h5     fields [N, C, H, W] float32 chunked (1, C, H, W); time [N] int64 seconds

The manifest is written last, so a folder without one is an unfinished write, never a silently
partial data set (:mod:`hpc_seaice.data.format.shards` writes the shards, :mod:`hpc_seaice.data.format.static`
the static file, :mod:`hpc_seaice.data.format.verify` checks all of it).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.variables import BOUNDS, UNITS, VARIABLES
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import atomic_write

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
KINDS = ("fields", "latent")
TIME_UNITS = "seconds since 1970-01-01 00:00:00"
DEFAULT_SPLITS: dict[str, list[str]] = {
    "train": ["2009-01-01", "2016-12-31"],
    "validation": ["2017-01-01", "2017-12-31"],
    "test": ["2018-01-01", "2018-12-31"],
}


@dataclass(frozen=True)
class Layout:
    """What every shard of a data set shares: its kind, the variables with units and bounds, the grid."""

    kind: str
    variables: tuple[str, ...]
    units: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    grid: tuple[int, int]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        set_ = object.__setattr__  # frozen: normalise the types once, here
        set_(self, "variables", tuple(str(v) for v in self.variables))
        set_(self, "units", tuple(str(u) for u in self.units))
        set_(self, "lower", tuple(float(v) for v in self.lower))
        set_(self, "upper", tuple(float(v) for v in self.upper))
        set_(self, "grid", tuple(int(g) for g in self.grid))
        if not len(self.variables) == len(self.units) == len(self.lower) == len(self.upper):
            raise ValueError("variables, units, lower and upper need one entry per variable")

    @classmethod
    def fields(cls, grid: Sequence[int]) -> Layout:
        """The five sea-ice variables (fixed order, units and physical bounds) on ``grid``."""
        lower, upper = zip(*(BOUNDS[v] for v in VARIABLES))
        return cls("fields", VARIABLES, [UNITS[v] for v in VARIABLES], lower, upper, grid)

    @classmethod
    def latent(cls, channels: int, grid: Sequence[int]) -> Layout:
        """``channels`` unbounded, unitless latent channels ``z00, z01, ...`` on ``grid``."""
        names, inf = [f"z{i:02d}" for i in range(channels)], [math.inf] * channels
        return cls("latent", names, ["1"] * channels, [-math.inf] * channels, inf, grid)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (len(self.variables), self.grid[0], self.grid[1])


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

    @property
    def layout(self) -> Layout:
        return Layout(self.kind, self.variables, self.units, self.lower, self.upper, self.grid)


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


def write_manifest(path: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp + rename); returns its path."""
    mpath = manifest_path(path)
    text = json.dumps(manifest_to_dict(manifest), indent=1) + "\n"
    atomic_write(mpath, text)
    return mpath


def build_manifest(
    layout: Layout,
    shards: Sequence[ShardInfo],
    splits: dict[str, list[str]] | None = None,
    source: dict[str, Any] | None = None,
) -> Manifest:
    """A manifest of ``layout`` over ``shards`` (sorted by time), with the overall time range filled in."""
    if not shards:
        raise ValueError("a manifest needs at least one shard")
    ordered = sorted(shards, key=lambda s: (np.datetime64(s.time_start), s.file))
    return Manifest(
        format_version=FORMAT_VERSION,
        kind=layout.kind,
        variables=list(layout.variables),
        units=list(layout.units),
        lower=list(layout.lower),
        upper=list(layout.upper),
        grid=list(layout.grid),
        shards=list(ordered),
        time_start=min(s.time_start for s in ordered),
        time_end=max(s.time_end for s in ordered),
        splits={k: list(v) for k, v in (splits or DEFAULT_SPLITS).items()},
        source=dict(source or {}),
    )


def merge_manifests(manifests: Sequence[Manifest]) -> Manifest:
    """One manifest from per-rank partial manifests written into the same folder.

    All parts must agree on kind, variables, units, bounds and grid; shard names must be unique
    (give each rank's :class:`ShardWriter` its own ``shard_prefix``).
    """
    if not manifests:
        raise ValueError("nothing to merge")
    first = manifests[0]
    for m in manifests[1:]:
        for k in (f.name for f in dataclass_fields(Layout)):
            if getattr(m.layout, k) != getattr(first.layout, k):
                raise ValueError(f"cannot merge manifests: {k} differs ({getattr(m, k)} != {getattr(first, k)})")
    shards = [s for m in manifests for s in m.shards]
    names = [s.file for s in shards]
    if len(set(names)) != len(names):
        raise ValueError("cannot merge manifests: duplicate shard file names (use distinct shard_prefix)")
    return build_manifest(first.layout, shards, splits=first.splits, source=first.source)


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
