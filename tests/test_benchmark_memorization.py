"""Smoke test of benchmarks/memorization.py: it runs on a small data set and writes well-formed results."""

from __future__ import annotations

import json

from test_benchmarks import bench, check_markdown, check_record


def test_memorization_benchmark_writes_times_fidelity_and_verdicts(tiny_dataset_64, tmp_path):
    module = bench("memorization")
    args = ["--data", str(tiny_dataset_64), "--out", str(tmp_path), "--blurred", "4", "--check", "3", "--many", "50"]
    assert module.main(args) == 0
    record = check_record(tmp_path / "memorization.json", "memorization")
    check_markdown(tmp_path / "memorization.md", "part", 5)
    assert [row["part"] for row in record["results"]] == ["read", "project", "search", "total", "search, 50 queries"]
    summary = record["summary"]
    # 64 x 64: block 1, so the projection is the full resolution and finds the exact nearest state.
    assert summary["full_resolution_check"]["same_state_share"] == 1.0
    ratios = summary["full_resolution_check"]["projected_over_full_to_same_state"]
    assert len(ratios) == 3 and all(abs(r - 1.0) < 1e-4 for r in ratios)
    assert summary["verdicts"]["blurred"]["copies_training"] is True
    assert summary["verdicts"]["validation"]["copies_training"] is False
    assert "Extrapolated, not measured" in json.loads((tmp_path / "memorization.json").read_text())["notes"]
