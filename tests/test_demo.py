"""The demo driver: a finished stage is skipped on a re-run and keeps the time it took when it ran."""

import sys
from pathlib import Path

from hpc_seaice.demo import Demo


def test_rerun_skips_and_keeps_earlier_stage_time(tmp_path: Path) -> None:
    first = Demo(tmp_path)
    marker = tmp_path / "made.txt"
    command = [sys.executable, "-c", f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')"]
    first.stage("make a file", marker.is_file(), [command], [str(marker)])
    assert marker.is_file() and not first.stages[0].done
    took = first.stages[0].seconds
    assert took is not None and took > 0

    marker.write_text("kept")  # a re-run must not run the command again
    second = Demo(tmp_path)
    second.stage("make a file", marker.is_file(), [command], [str(marker)])
    second.stage("never ran", True, [command], [])
    assert marker.read_text() == "kept"
    assert second.stages[0].done and second.stages[0].seconds == took
    assert second.stages[1].done and second.stages[1].seconds is None
