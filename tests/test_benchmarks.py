"""Smoke tests of the benchmark suite: each part runs in quick mode and writes well-formed results.

They assert on the structure and consistency of what is written (JSON, markdown table, PNG), never
on a speed: timings on a shared CI machine mean nothing.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, child_env

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def bench(module: str):
    """``benchmarks.<module>``: the suite lives at the repository root, which plain ``pytest`` does not import."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.{module}")


def run_module(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def check_record(path: Path, name: str) -> dict:
    record = json.loads(path.read_text())
    assert record["name"] == name
    env = record["environment"]
    for key in ("device", "torch", "python", "git_commit", "timestamp"):
        assert env.get(key), key
    assert isinstance(record["settings"], dict) and record["settings"]
    assert isinstance(record["results"], list) and record["results"]
    return record


def check_markdown(path: Path, first_column: str, rows: int) -> str:
    text = path.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    header = next(line for line in table if line.startswith(f"| {first_column} |"))
    columns = header.count("|")
    body = table[table.index(header) + 1 :][:rows]
    assert len(body) == rows and all(line.count("|") >= columns for line in body)
    assert "Environment: device" in text
    return text


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def speed_run(results: Path) -> Path:
    run_module(
        "benchmarks.speed",
        "--quick",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--retries",
        "0",
        "--sweep",
        "1,2",
        "--out",
        str(results),
    )
    return results


@pytest.fixture(scope="module")
def scaling_run(results: Path) -> Path:
    run_module("benchmarks.scaling", "--quick", "--runs", "1r-b1x-t1,2r-ddp", "--out", str(results))
    return results


def test_speed_quick_writes_json_table_and_chart(speed_run: Path) -> None:
    record = check_record(speed_run / "speed.json", "speed")
    s = record["summary"]
    assert s["quick"] is True and s["presets"] == {"data": "demo-data", "latent": "demo-latent", "vae": "demo-vae"}
    assert s["geometry"]["data"] == [5, 128, 128] and s["geometry"]["latent"][0] == 16
    # the default sampler on both sides (diffusion.sampler_steps): 30 Heun steps, 59 network calls
    assert s["sampler"] == {"heun_steps": 30, "network_evaluations": 59}
    for space in ("data", "latent"):
        train, sampling = s["spaces"][space]["training"], s["spaces"][space]["sampling"]
        assert len(train["step_times_s"]) == 1 and train["samples_per_s"] > 0
        assert train["flops_per_step"] > 0 and train["achieved_flops"] > 0 and train["mfu"] is None  # CPU
        assert 0 < train["cpu_share"] and 0 < sampling["eval_cpu_share"]
        assert sampling["kind"] in ("measured", "derived") and sampling["s_per_sample"] > 0
        derived = (59 * sampling["median_eval_s"] + sampling["median_decode_s"]) / s["batch_size"]
        assert math.isclose(sampling["derived_s_per_sample"], derived, rel_tol=1e-9)
    # A CPU run derives the data-space sampling time and says so; the latent sampler runs end to end.
    assert s["spaces"]["data"]["sampling"]["kind"] == "derived"
    assert s["spaces"]["data"]["sampling"]["how"].startswith("derived: (59 x")
    assert s["spaces"]["latent"]["sampling"]["kind"] == "measured"
    r = s["ratios"]
    assert math.isclose(
        r["training_throughput"],
        s["spaces"]["latent"]["training"]["samples_per_s"] / s["spaces"]["data"]["training"]["samples_per_s"],
    )
    assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("training_flops", "sampling_time", "sampling_flops"))
    # The data-space network is the bigger one, in FLOPs per training step and per generated sample.
    assert r["training_flops"] > 1 and r["sampling_flops"] > 1
    # Batch sweep: both spaces at each batch, per-sample time and decoder share from the timed parts.
    sweep = s["sweep"]
    assert sorted((w["space"], w["batch"]) for w in sweep) == [("data", 1), ("data", 2), ("latent", 1), ("latent", 2)]
    for w in sweep:
        assert math.isclose(w["s_per_sample"], (59 * w["call_s"] + w["decode_s"]) / w["batch"], rel_tol=1e-9)
        assert math.isclose(w["decoder_share"], w["decode_s"] / (59 * w["call_s"] + w["decode_s"]), rel_tol=1e-9)
        assert math.isclose(w["matmul_fraction"], w["achieved_flops"] / s["matmul"]["flops_per_s"], rel_tol=1e-9)
    lat2 = next(w for w in sweep if w["space"] == "latent" and w["batch"] == 2)
    data2 = next(w for w in sweep if w["space"] == "data" and w["batch"] == 2)
    assert math.isclose(s["sweep_ratios"]["2"]["sampling_time"], data2["s_per_sample"] / lat2["s_per_sample"])
    # The measured matmul rate is the efficiency reference of every network on a CPU.
    train = s["spaces"]["latent"]["training"]
    assert s["matmul"]["flops_per_s"] > 0
    assert math.isclose(train["matmul_fraction"], train["achieved_flops"] / s["matmul"]["flops_per_s"])
    assert s["targets"]["sampling_ratio"] == 22.0 and s["compiled"] == []  # --quick: no compile comparison
    latent_sampling = s["spaces"]["latent"]["sampling"]
    share = latent_sampling["median_decode_s"] / (latent_sampling["s_per_sample"] * s["batch_size"])
    assert math.isclose(latent_sampling["decoder_share"], share)
    # the latent paths that do not smooth, each timed whole in the same run (docs/refiner.md)
    paths = s["spaces"]["latent"]["paths"]
    assert paths["refiner"]["preset"] == "demo-refiner" and paths["refiner"]["network_evaluations"] == 19
    data_s = s["spaces"]["data"]["sampling"]["s_per_sample"]
    for key, ratio in (
        ("latent_refined", "sampling_time_latent_refined"),
        ("latent_spectral", "sampling_time_latent_spectral"),
    ):
        assert len(paths[key]["times_s"]) == 1 and math.isclose(r[ratio], data_s / paths[key]["s_per_sample"])
    assert math.isclose(r["refiner_share_of_data_sample"], paths["refinement_only"]["s_per_sample"] / data_s)
    text = check_markdown(speed_run / "speed.md", "quantity", len(record["results"]))
    assert "latent + refiner, per sample" in text and "latent + spectral decoder noise" in text
    assert "Batch sweep" in text and "decoder share" in text
    assert "QUICK run" in text and "demo-data at 5x128x128" in text and "derived" in text
    # the 25x / 22x targets are about the paper geometry: a quick run sets each ratio against its own FLOP ratio
    (ratios,) = [line for line in text.splitlines() if line.startswith("Latent/data ratios")]
    assert "not judged here" in ratios and "missed" not in ratios and " met" not in ratios, ratios
    share = s["ratios"]["training_throughput"] / s["ratios"]["training_flops"]
    assert f"= {share:.2f} of its FLOP ratio {s['ratios']['training_flops']:.1f}x" in ratios, ratios
    assert (speed_run / "speed_ratios.png").read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.distributed
def test_scaling_quick_runs_the_trainer_on_one_and_two_ranks(scaling_run: Path) -> None:
    record = check_record(scaling_run / "scaling.json", "scaling")
    runs = record["summary"]["runs"]
    assert set(runs) == {"1r-b1x-t1", "2r-ddp"}
    for name, run in runs.items():
        assert "error" not in run, (name, run.get("error"), run.get("stderr_tail"))
        assert run["samples_per_s"] > 0 and 0 <= run["data_wait_fraction"] <= 1
        assert run["windows_used"] == 2 and run["steps_timed"] == 4
    assert "2 rank(s)" in runs["2r-ddp"]["banner"] and "via torchrun" in runs["2r-ddp"]["banner"]
    eff = record["summary"]["efficiencies"]
    assert math.isclose(
        eff["weak_efficiency"], runs["2r-ddp"]["samples_per_s"] / (2 * runs["1r-b1x-t1"]["samples_per_s"])
    )
    assert eff["deepspeed_zero1_over_ddp"] is None  # not run
    text = check_markdown(scaling_run / "scaling.md", "run", 2)
    assert "weak-scaling efficiency" in text


def test_suite_combines_the_parts_results(speed_run: Path, scaling_run: Path) -> None:
    suite = bench("__main__")
    assert suite.main(["--quick", "--parts", "", "--out", str(speed_run)]) == 0
    rows = suite.combined_rows(speed_run, quick=True)
    by_measure = {row["measure"]: row for row in rows}
    assert by_measure["training throughput, latent / data"]["value"].endswith("x)")
    for measure in ("training throughput, latent / data", "sampling time per sample, data / latent"):
        row = by_measure[measure]  # a quick run's demo presets are not judged against the paper-geometry target
        assert row["target"] == "paper geometry only" and row["verdict"] == "-" and "of its FLOP ratio" in row["value"]
    assert by_measure["reader / raw h5py bandwidth"]["value"] == "not run"
    assert any(m.startswith("weak-scaling efficiency") for m in by_measure)
    check_record(speed_run / "summary.json", "summary")
    assert "| benchmark |" in (speed_run / "summary.md").read_text()


def test_suite_reports_every_trainer_loader_path_against_the_target() -> None:
    suite = bench("__main__")
    rows = [
        {"grid": "16x64x64", "path": "raw h5py, new array per batch", "vs_raw": 1.0},
        {"grid": "16x64x64", "path": "batch loader, 0 workers", "vs_raw": 0.85},
        {"grid": "16x64x64", "path": "batch loader, 2 workers", "vs_raw": 0.69},
        {"grid": "16x64x64", "path": "batch loader, 0 workers, in memory", "vs_raw": 1.2},
        {"grid": "16x64x64", "path": "batch loader, 2 workers, one batch per hand-over", "vs_raw": 0.5},
        {"grid": "16x64x64", "path": "reader, 0 workers, collate", "vs_raw": 0.9},
    ]
    out = suite.dataloader_rows({"results": rows, "environment": {"device": "cpu"}})
    # with and without workers, each from-disk batch-loader path: a miss is not hidden behind a better path
    assert [(r["measure"].rsplit(", ", 2)[-2:], r["verdict"]) for r in out] == [
        (["batch loader", "0 workers"], "met"),
        (["batch loader", "2 workers"], "missed"),
    ]


def test_scaling_summaries_skip_warmup_windows_and_compute_efficiencies() -> None:
    scaling = bench("scaling")
    windows = [
        {"step": 5 * (i + 1), "samples_per_s": s, "data_wait_fraction": w, "step_time_s": 1.0 / s}
        for i, (s, w) in enumerate([(1.0, 0.5), (10.0, 0.01), (12.0, 0.03), (11.0, 0.02)])
    ]
    spec = scaling.RunSpec("2r-ddp", 2, 1, 8)
    summary = scaling.summarise_run(spec, windows, skip=1)
    assert summary["samples_per_s"] == 11.0 and summary["windows_used"] == 3 and summary["steps_timed"] == 15
    assert summary["data_wait_fraction"] == 0.02 and summary["data_wait_fraction_max"] == 0.03
    with pytest.raises(ValueError):
        scaling.summarise_run(spec, windows, skip=4)
    results = {
        "1r-b1x-t1": {"samples_per_s": 6.0, "data_wait_fraction": 0.01},
        "2r-ddp": {"samples_per_s": 10.8, "data_wait_fraction": 0.04},
        "1r-b2x-t1": {"samples_per_s": 6.0},
        "1r-b2x-t2": {"samples_per_s": 9.0},
        "2r-zero1": {"samples_per_s": 9.72},
        "2r-zero2": {"error": "exit 1"},
        "weak-pb8-1r": {"spec": vars(scaling.RunSpec("weak-pb8-1r", 1, 1, 8)), "samples_per_s": 5.0},
        "weak-pb8-2r": {"spec": vars(scaling.RunSpec("weak-pb8-2r", 2, 1, 16)), "samples_per_s": 9.5},
    }
    results["1r-b1x-t1"]["spec"] = vars(scaling.RunSpec("1r-b1x-t1", 1, 1, 4))
    eff = scaling.efficiencies(results, "cpu")
    assert math.isclose(eff["weak_efficiency"], 0.9)
    assert math.isclose(eff["strong_speedup_vs_1rank_1thread"], 1.8)
    assert math.isclose(eff["two_ranks_over_one_rank_two_threads"], 1.2)
    assert math.isclose(eff["deepspeed_zero1_over_ddp"], 0.9) and eff["deepspeed_zero2_over_ddp"] is None
    assert eff["max_median_data_wait_fraction"] == 0.04
    assert eff["weak_efficiency_by_per_rank_batch"] == pytest.approx({4: 0.9, 8: 0.95})


@pytest.mark.parametrize("groups,transposed", [(1, False), (8, False), (64, False), (1, True), (4, True)])
def test_training_flops_count_grouped_convolution_backward_once_per_group(groups: int, transposed: bool) -> None:
    import torch

    speed = bench("speed.flops")
    conv = (torch.nn.ConvTranspose2d if transposed else torch.nn.Conv2d)(64, 64, 3, padding=1, groups=groups)
    x = torch.randn(1, 64, 8, 8, requires_grad=True)
    forward = speed.count_flops(lambda: conv(x))
    # Backward = input gradient + weight gradient, each as many multiply-adds as the forward.
    assert speed.count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_gpu_script_parses() -> None:
    proc = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_speed_compile_only_compares_compiled_calls_and_measures_nothing_else(tmp_path: Path, monkeypatch) -> None:
    """gpu.sh's compile step (``--compile-only``) must not re-run the eager run's measurements: it
    builds the networks and hands each one to the compiled-vs-eager comparison (stubbed here:
    compiling takes minutes), whose eager and compiled timings come from the same run."""
    speed, speed_compile = bench("speed.run"), bench("speed.compiled")

    def eager_run(*args, **kwargs):
        raise AssertionError("--compile-only ran the eager measurements")

    compared = []

    def compiled_sampling(space, denoiser, *rest, backend="inductor"):
        shape, batch = rest[-6], rest[-4]  # ..., shape, latent shape, batch, device, precision, repeats
        compared.append((space, tuple(shape), batch))
        return [
            {"what": f"{space} call", "batch": batch, "eager_s": 2.0, "compiled_s": 0.5, "speedup": 4.0}
            | {"compile_s": 30.0, "max_abs_diff": 1e-6, "max_abs_output": 3.0}
        ]

    monkeypatch.setattr(speed, "measure", eager_run)
    measure = bench("speed.measure")
    for name in ("measure_training", "measure_sampling", "measure_vae_encode", "sweep_space", "measure_matmul_flops"):
        monkeypatch.setattr(measure, name, eager_run)
    monkeypatch.setattr(speed_compile, "compiled_sampling", compiled_sampling)
    argv = ["--quick", "--device", "cpu", "--batch-size", "2", "--compile-only", "--out", str(tmp_path)]
    assert speed.main([*argv, "--name", "compiled"]) == 0
    assert compared == [("latent", (16, 16, 16), 2)]  # on a CPU only the latent side is compiled
    record = check_record(tmp_path / "compiled.json", "compiled")
    assert record["settings"]["compile_only"] is True and "spaces" not in record["summary"]
    assert [row["speed-up"] for row in record["results"]] == ["4x"]
    text = check_markdown(tmp_path / "compiled.md", "call", 1)
    assert "both timed in this run" in text and "| latent call | 2 | 2 | 0.5 | 4x |" in text
    with pytest.raises(SystemExit):
        speed.parse_args(["--compile-only", "--compile"])


def test_decoder_quality_scores_perfect_and_offset_reconstructions(tiny_dataset) -> None:
    quality = bench("decoder_quality")
    from hpc_seaice.data.loading.dataset import ShardedDataset

    ds = ShardedDataset(tiny_dataset, split="test", normalize=False)
    truth = np.stack([ds.raw(i) for i in range(len(ds))]).astype(np.float64)
    mask = ds.static.mask.astype(np.float64)
    perfect = quality.scores(truth, truth, mask)
    assert all(v == 0 for v in perfect["rmse"].values()) and perfect["miz_area_error"] == 0
    assert perfect["psd_small_scale_log10_ratio"] == 0 and all(v == 0 for v in perfect["plateau_share_error"].values())
    # A constant 0.1 m thicker ocean: RMSE 0.1 in sit only, and no sit == 0 cell left in the ocean.
    thicker = truth.copy()
    thicker[:, 0] += 0.1 * (mask > 0.5)
    s = quality.scores(thicker, truth, mask)
    assert math.isclose(s["rmse"]["sit"], 0.1, rel_tol=1e-9) and s["rmse"]["sic"] == 0
    assert s["plateau_shares"]["sit=0"] == 0 and s["plateau_share_error"]["sic=1"] == 0
    assert math.isclose(s["plateau_share_error"]["sit=0"], perfect["plateau_shares"]["sit=0"])
    assert set(s["plateau_shares"]) == {"sit=0", "sic=0", "sic=1", "damage=1"}


def test_decoder_quality_trains_both_decoders_at_every_learning_rate_in_their_own_folders(tmp_path) -> None:
    quality = bench("decoder_quality")
    plan = quality.runs(tmp_path, 10, ["vae.refine_channels=16"], [0, 1], [1e-3, 4e-3])
    assert set(plan) == {"conv"} | {quality.decoder_name(a, lr) for a in ("conv", "light") for lr in (1e-3, 4e-3)}
    folders = [quality.run_dir_of(o) for by_seed in plan.values() for o in by_seed.values()]
    assert len(set(folders)) == len(folders) == 1 + 2 * 2 * 2  # no run reuses another's folder
    assert not any(o.startswith("optim.lr=") for o in plan["conv"][0])  # the joint run keeps the config's rate
    for lr in (1e-3, 4e-3):
        for arch in ("conv", "light"):
            for seed, overrides in plan[quality.decoder_name(arch, lr)].items():
                assert f"optim.lr={lr!r}" in overrides and f"train.seed={seed}" in overrides
                assert f"vae.frozen_encoder={tmp_path / 'runs' / 'conv'}" in overrides
                assert ("vae.decoder_arch=light" in overrides) == (arch == "light")


def test_decoder_quality_names_rates_that_differ_beyond_six_digits_apart(tmp_path) -> None:
    """Rates are named by their shortest exact text: 0.001 and 0.0010000001 (the same at 6
    significant digits) must be two pairs of runs in two folders, not one run under one name."""
    quality = bench("decoder_quality")
    lrs = [1e-3, 1.0000001e-3]
    plan = quality.runs(tmp_path, 10, [], [0], lrs)
    assert len(plan) == 1 + 2 * len(lrs)
    folders = {quality.run_dir_of(o) for by_seed in plan.values() for o in by_seed.values()}
    assert len(folders) == len(plan)
    assert quality.rate_text(1e-3) == "0.001" and quality.rate_text(4e-3) == "0.004"  # usual rates read as typed
    assert quality.rate_text(1e-5) == "1e-05"


def test_decoder_quality_verdicts_apply_the_5_percent_target_and_the_seed_spread() -> None:
    quality = bench("decoder_quality")
    conv = quality.aggregate(
        [{"rmse sit": 1.0, "psd_small_scale_log10_ratio": -1.0}, {"rmse sit": 1.2, "psd_small_scale_log10_ratio": -1.2}]
    )
    assert conv["rmse sit"]["mean"] == pytest.approx(1.1) and conv["rmse sit"]["std"] == pytest.approx(
        0.2 / math.sqrt(2)
    )

    def light(rmse: float, psd: float) -> dict:
        return {"rmse sit": {"mean": rmse, "std": 0.0}, "psd_small_scale_log10_ratio": {"mean": psd, "std": 0.0}}

    ok = quality.verdicts(light(1.1 * 1.049, -1.1 * 1.049), conv, 2)
    assert ok["rmse sit"]["holds"] and ok["psd_small_scale_log10_ratio"]["holds"]
    assert ok["rmse sit"]["change"] == pytest.approx(0.049) and not ok["rmse sit"]["beyond_seed_spread"]
    bad = quality.verdicts(light(1.1 * 1.051 + 0.3, -1.1 * 1.051), conv, 2)  # 0.3 > 2 x the standard error 0.1
    assert not bad["rmse sit"]["holds"] and not bad["psd_small_scale_log10_ratio"]["holds"]
    assert bad["rmse sit"]["beyond_seed_spread"]
    assert quality.verdicts(light(-0.5, 0.5), conv, 2)["psd_small_scale_log10_ratio"]["holds"]  # closer to 0 wins
    zero = {"share sic=1 error": {"mean": 0.0, "std": 0.0}}
    both_exact = quality.verdicts(zero, zero, 2)["share sic=1 error"]  # both decoders get the share exactly
    assert both_exact["change"] == 0 and both_exact["holds"]
