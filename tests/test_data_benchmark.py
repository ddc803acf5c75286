"""Smoke test of benchmarks/dataloader.py: it runs and writes well-formed results (no speed asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dataloader_benchmark_writes_json_and_table(tmp_path, capsys):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.dataloader import main

    assert main(["--grids", "latent16,32", "--samples", "40", "--repeat", "1", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "dataloader.json").read_text())
    env = record["environment"]
    for key in ("device", "torch", "numpy", "h5py", "git_commit", "hostname", "cpu_count"):
        assert env.get(key) not in (None, ""), key
    rows = record["results"]
    paths = [r["path"] for r in rows]
    assert paths[0] == "raw h5py, new array per batch" and rows[0]["vs_raw"] == 1.0
    assert sum(p.startswith("reader") for p in paths) == 8 and sum(p.startswith("DataLoader alone") for p in paths) == 2
    # 3 per geometry, the one-batch-per-hand-over path per geometry, 2 with posterior (latent)
    assert sum(p.startswith("batch loader") for p in paths) == 10
    assert sum(p == "batch loader, 2 workers, one batch per hand-over" for p in paths) == 2
    posterior = [r for r in rows if "posterior" in r["path"]]
    assert {r["grid"] for r in posterior} == {"16x16x16"} and all(r["samples"] == 40 for r in posterior)
    assert {r["grid"] for r in rows} == {"16x16x16", "5x32x32"}  # the latent geometry and fields
    assert all(r["MB_per_s"] > 0 and r["samples"] > 0 for r in rows)
    table = (tmp_path / "dataloader.md").read_text()
    assert "| grid | path |" in table and "Environment: device" in table
    assert "reader, 2 workers, collate" in capsys.readouterr().out
