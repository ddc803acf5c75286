"""The output folder of ``hpc-seaice evaluate``: checked before the scoring, written at the end as a whole.

The report (``metrics.json``, ``report.md`` and the figures ``metrics.json`` lists) goes through
:class:`hpc_seaice.outputs.Output`: written into a temporary folder beside ``--out`` and swapped
in, so a full disk, a read-only folder or a kill while writing leaves the previous report whole,
and a folder that cannot take it is refused before minutes of scoring, not after. A new evaluation
replaces the previous report in the same folder without ``--overwrite`` (only the files that
report listed; nothing else in the folder); two writing at the same moment: the second waits for
nothing and is refused in one line naming the first.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.outputs import Output

METRICS_NAME = "metrics.json"
REPORT_NAME = "report.md"
REPORT_BYTES = 64 << 20  # the figures and tables, with room: a few PNGs of a few MB at most


def report_files(folder: Path) -> list[str]:
    """What an earlier evaluation wrote into ``folder``, metrics first (from its ``metrics.json``)."""
    metrics = folder / METRICS_NAME
    if not metrics.is_file():
        return []
    try:
        figures = json.loads(metrics.read_text()).get("figures") or {}
    except (OSError, ValueError, AttributeError):
        figures = {}  # a damaged report: its two text files are still ours, the figures are left
    names = [str(n) for n in figures.values() if isinstance(n, str) and Path(n).name == n and not n.startswith(".")]
    return [METRICS_NAME, REPORT_NAME, *names]


def report_output(out: str | os.PathLike, inputs: Sequence[tuple[str, str | os.PathLike]]) -> Output:
    """The checked output of an evaluation (before any scoring)."""
    output = Output(
        out, "evaluate", folder=True, inputs=inputs, owned=report_files, last=METRICS_NAME, replace_own=True
    )
    return output.check(REPORT_BYTES, "the report and figures")


def write_report_folder(
    output: Output,
    result: dict[str, Any],
    figures: Callable[[Path], dict[str, str]],
    render: Callable[[Path, dict[str, Any]], Any],
) -> dict[str, Any]:
    """Write figures (``figures(folder)`` returns their names), ``metrics.json`` and the report, then swap in."""
    with output.writing():
        result["figures"] = figures(output.path)
        text = json.dumps(result, indent=1, allow_nan=False) + "\n"
        (output.path / METRICS_NAME).write_text(text)
        render(output.path / REPORT_NAME, result)
        output.commit()
    return result


def jsonable(x: Any) -> Any:
    """numpy scalars/arrays to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
