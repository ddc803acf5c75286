"""``python -m benchmarks.smoothing`` reads the committed study and speed results and writes its table."""

import json
from pathlib import Path

from benchmarks import smoothing

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def test_smoothing_table_is_read_from_the_study_and_speed_results(tmp_path):
    assert smoothing.main(["--results", str(RESULTS), "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "smoothing.json").read_text())
    paths = [row["path"] for row in record["rows"]]
    assert paths[0] == "floor (validation year)" and "LDM + residual refiner" in paths
    study = json.loads((RESULTS / "study.json").read_text())["summary"]
    speed = json.loads((RESULTS / "speed.json").read_text())["summary"]["ratios"]
    refined = next(row for row in record["rows"] if row["path"] == "LDM + residual refiner")
    # the numbers are the study's and the speed run's, not typed
    interval = study["smoothing"]["sources"]["refiner-censored"]["intervals"]["psd/sit/small_lt100km"]
    assert refined["sit small_lt100km"].startswith(f"{interval['estimate']:+.2f}")
    assert refined["speed-up vs data space"] == f"{speed['sampling_time_latent_refined']:.1f}x"
    kept = next(f for f in study["findings"] if f["id"] == "small_scales_kept")
    assert f"**{kept['verdict']}**" in record["trade_off"][0]
    text = (tmp_path / "smoothing.md").read_text()
    assert "## The trade-off" in text and "| path |" in text
    assert (tmp_path / "smoothing.png").read_bytes()[:4] == b"\x89PNG"
