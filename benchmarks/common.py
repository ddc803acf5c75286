"""Helpers every benchmark shares: the environment record, timing, and result files.

A benchmark number means little without the machine, library versions and commit that
produced it, so every result file carries them. Results go to ``benchmarks/results/<name>.json``
(machine-readable, with settings) and ``<name>.md`` (the table a person reads); set
``HPC_SEAICE_BENCH_RESULTS`` to write elsewhere.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hpc_seaice.fileio import atomic_write

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_OUT_HELP = "results folder (default benchmarks/results, or .../quick)"

T = TypeVar("T")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except Exception:
        return "not installed"


def environment() -> dict[str, Any]:
    """Device, library versions, commit, host and CPU count of this run."""
    device = f"cpu ({_cpu_model()})"
    try:
        import torch

        if torch.cuda.is_available():
            device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible)"
    except ImportError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    env = {
        "device": device,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "h5py": _version("h5py"),
        "git_commit": _git_commit(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    try:
        import h5py

        env["hdf5"] = h5py.version.hdf5_version
    except ImportError:
        pass
    return env


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Smallest wall time of ``repeat`` calls: the least disturbed by other load."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table; ``columns`` default to the keys of the first row."""
    if not rows:
        return "(no results)"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def results_dir() -> Path:
    return Path(os.environ.get("HPC_SEAICE_BENCH_RESULTS", REPO_ROOT / "benchmarks" / "results"))


def out_dir_for(out: str, quick: bool) -> Path:
    """``--out`` if given, else the results folder; its ``quick/`` keeps smoke tests from replacing full results."""
    if out:
        return Path(out)
    return results_dir() / "quick" if quick else results_dir()


def add_output_options(
    p: argparse.ArgumentParser, *, name: str, name_help: str = "result file name", out_help: str = RESULTS_OUT_HELP
) -> None:
    """``--name`` and ``--out``: where a benchmark writes ``<name>.json`` and ``<name>.md``, the same in each."""
    p.add_argument("--name", default=name, help=name_help)
    p.add_argument("--out", default="", help=out_help)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} < 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} < 0")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{value} is not a finite number > 0")
    return value


def comma_list(item: Callable[[str], T], expected: str) -> Callable[[str], list[T]]:
    """An argparse ``type`` for a comma-separated list ('' for none), each entry read by ``item``.

    ``item`` raises ValueError on a bad entry; argparse then prints one usage line naming the flag,
    ``expected`` and the value, and exits with 2.
    """

    def parse(text: str) -> list[T]:
        try:
            return [item(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    return parse


def write_report(
    name: str,
    rows: list[dict[str, Any]],
    *,
    settings: dict[str, Any],
    notes: str,
    summary: dict[str, Any] | None = None,
    header_text: str = "",
    out_dir: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """``<name>.json`` (environment, settings, table rows, the raw ``summary`` if given, notes) and ``<name>.md``.

    The markdown opens with ``header_text`` (what was measured) when given; ``out_dir`` defaults to
    :func:`results_dir`. Both files are written atomically.
    """
    out = Path(out_dir) if out_dir is not None else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    record = {"name": name, "environment": env, "settings": settings, "results": rows}
    record.update({"summary": summary} if summary is not None else {})
    record["notes"] = notes
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    atomic_write(json_path, json.dumps(record, indent=1, default=str) + "\n")
    md = [
        f"# {name}",
        "",
        *([header_text, ""] if header_text else []),
        markdown_table(rows),
        "",
        *([notes, ""] if notes else []),
        "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()),
        "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()),
        "",
    ]
    atomic_write(md_path, "\n".join(md))
    return json_path, md_path


def print_report(header_text: str, rows: Sequence[dict[str, Any]]) -> None:
    """What ``write_report`` put in the markdown, on stdout too: a person running a benchmark reads it there."""
    print()
    print(header_text)
    print()
    print(markdown_table(rows))


def load_average() -> float | None:
    """1-minute load average: other work on the machine skews CPU timings, so it is recorded."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
