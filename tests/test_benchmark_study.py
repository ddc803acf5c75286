"""Smoke test of ``python -m benchmarks.study --quick``: every stage of the study runs and the report is written.

The quick plan (64 x 64, two years, 4 training steps per model) runs the demo's pipeline with
``evaluate --findings``; the test checks what the study writes, not the verdicts of 4-step models.
"""

import json
import sys

import pytest
from helpers import run_command


@pytest.mark.slow
@pytest.mark.distributed
def test_study_quick_runs_every_stage_and_writes_its_report(tmp_path):
    out, work = tmp_path / "results", tmp_path / "work"
    proc = run_command(
        [sys.executable, "-m", "benchmarks.study", "--quick", "--work", str(work), "--out", str(out)], timeout=1500
    )
    assert "study finished" in proc.stdout
    record = json.loads((out / "study.json").read_text())
    s = record["summary"]
    # with the residual refiner of the censored LDM as the fourth role, a fourth finding
    assert [f["id"] for f in s["findings"]] == ["competitive", "smoothing", "censoring_miz", "small_scales_kept"]
    assert all(f["verdict"] in ("holds", "does not hold", "undecided") for f in s["findings"])
    stages = [r["stage"] for r in s["stages"]]
    # 12 + the refiner's training and sample + the spectral-noise sample; every part timed
    assert len(stages) == 15 and all(r["seconds"] and r["seconds"] > 0 for r in s["stages"])
    models = {"floor (validation)", "diffusion-data-space", "refiner-censored", "ldm-censored + spectral decoder noise"}
    assert models <= set(s["scores"]) and len(s["vae_large_scales"]) == 2
    md = (out / "study.md").read_text()
    assert "## Findings" in md and "## Wall time of each part" in md and "(study/spectra_all.png)" in md
    for name in ("spectra_all.png", "maps.png", "aggregates.png", "deformation_scaling.png", "report.md"):
        assert (out / "study" / name).is_file(), name
    # a re-run resumes: every stage is skipped and the report is written again
    again = run_command(
        [sys.executable, "-m", "benchmarks.study", "--quick", "--work", str(work), "--out", str(out)], timeout=600
    )
    assert again.stdout.count("already done, skipped") == 15
