"""``bash benchmarks/gpu.sh --dry``: the script run on a lent GPU, every step on the CPU at toy sizes,
so that a broken step is found here and not in the few minutes of a GPU loan (the whole run takes
about 40 s of CPU time: a minute on an idle 2-core machine; the script's own budget in dry mode is
150 s)."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT, child_env

STEPS = ("speed_gpu_eager", "scaling_gpu", "speed_gpu_compile")


def test_gpu_sh_dry_runs_every_step_on_the_cpu(tmp_path):
    env = child_env(OUT=str(tmp_path), PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--dry"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    results = tmp_path / "benchmarks"
    log = (results / "gpu.log").read_text()
    assert proc.returncode == 0, log + proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "dry mode" in log and "0 step(s) failed" in log
    for step in STEPS:
        assert f"== {step}: exit 0" in log, log
    eager = json.loads((results / "speed_gpu_eager.json").read_text())["settings"]
    assert eager["device"] == "cpu" and eager["precision"] == "bf16" and eager["presets"]["data"] == "tiny-unet"
    compiled = json.loads((results / "speed_gpu_compile.json").read_text())["summary"]
    assert compiled["compile_backend"] == "aot_eager" and len(compiled["compiled"]) == 2, compiled
    for call in compiled["compiled"]:  # the denoiser call and the VAE decode, compiled, agree with eager
        assert call["compiled_s"] > 0 and call["max_abs_diff"] <= 1e-3 * max(call["max_abs_output"], 1.0), call
    scaling = json.loads((results / "scaling_gpu.json").read_text())
    assert scaling["results"], scaling
