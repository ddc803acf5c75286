"""The cluster benchmarks: the scaling benchmark's plan, efficiencies, report and all-reduce probe
without a cluster; the speed comparison as a job on the single-node cluster (marked ``slurm``).

The real scaling runs (jobs on the two-host cluster) are in tests/test_multinode.py.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers import free_port

from benchmarks import allreduce_probe
from benchmarks.scaling_slurm import parse_args, plan
from benchmarks.scaling_slurm_report import finish_rows, latent_over_data, table


def test_plan_has_weak_and_strong_runs_sharing_the_baseline():
    args = parse_args(["--nodes", "1,2,4", "--gpus-per-node", "4", "--batch", "8"])
    names = {c["name"]: c for c in plan(args)}
    assert sorted(names) == sorted(
        f"{s}-{m}-{n}n"
        for s in ("data", "latent")
        for m, n in [("base", 1), ("weak", 2), ("strong", 2), ("weak", 4), ("strong", 4)]
    )
    assert [names[f"data-weak-{n}n"]["global_batch"] for n in (2, 4)] == [64, 128]  # 8 per rank
    assert (
        {names[f"data-strong-{n}n"]["global_batch"] for n in (2, 4)} == {32} == {names["data-base-1n"]["global_batch"]}
    )
    assert names["latent-strong-4n"]["ranks"] == 16


def test_a_strong_batch_that_the_ranks_cannot_share_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--nodes", "1,3", "--gpus-per-node", "2", "--global-batch", "8"])
    assert "--global-batch 8 is not divisible by the 6 ranks of 3 node(s)" in capsys.readouterr().err


def row(space, mode, nodes, thr, status="ok"):
    return {
        "name": f"{space}-{mode}-{nodes}n",
        "space": space,
        "mode": mode,
        "nodes": nodes,
        "ranks": 2 * nodes,
        "global_batch": 4,
        "samples_per_s": thr,
        "status": status,
    }


def test_efficiencies_and_ratios_against_the_smallest_run():
    rows = finish_rows(
        [
            row("data", "base", 1, 10.0),
            row("data", "weak", 2, 18.0),
            row("data", "strong", 2, 15.0),
            row("latent", "base", 1, 100.0),
            row("latent", "weak", 2, 200.0),
            row("latent", "strong", 2, 0.0, status="job 9: cannot start: PENDING (PartitionConfig): ..."),
        ]
    )
    eff = {r["name"]: (r.get("weak_efficiency"), r.get("strong_efficiency")) for r in rows}
    assert eff["data-base-1n"] == (1.0, 1.0)
    assert eff["data-weak-2n"][0] == pytest.approx(0.9) and eff["data-strong-2n"][1] == pytest.approx(0.75)
    assert eff["latent-weak-2n"][0] == pytest.approx(1.0) and eff["latent-strong-2n"][1] is None
    ratios = {r["nodes"]: r for r in latent_over_data(rows)}
    assert ratios[1]["weak"] == ratios[1]["strong"] == pytest.approx(10.0)
    assert ratios[2]["weak"] == pytest.approx(200 / 18) and "strong" not in ratios[2]
    shown = {r["status"]: r for r in table(rows)}
    marked = next(r for s, r in shown.items() if "PartitionConfig" in s)
    assert marked["status"].startswith("**") and math.isnan(marked["samples/s"]) and marked["strong eff."] == "-"


def test_probe_times_each_step_and_keeps_ddp_gradients(tmp_path, monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        make = lambda: torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))  # noqa: E731
        plain, probed = make(), make()
        probed.load_state_dict(plain.state_dict())
        spans = allreduce_probe.BucketSpans()
        restore = allreduce_probe.install(spans)
        try:
            ddp = torch.nn.parallel.DistributedDataParallel(probed, bucket_cap_mb=0.01)
        finally:
            restore()
        reference = torch.nn.parallel.DistributedDataParallel(plain)  # built after restore: no hook
        x = torch.randn(8, 64)
        for _ in range(3):
            for model in (ddp, reference):
                model.zero_grad()
                model(x).square().mean().backward()
        for a, b in zip(probed.parameters(), plain.parameters()):
            torch.testing.assert_close(a.grad, b.grad)
        assert len(spans.spans) == 3 and spans.buckets >= 3  # one span per step, however many buckets
        assert all(d >= 0 for d in spans.durations())
    finally:
        dist.destroy_process_group()
    (tmp_path / "allreduce").mkdir()
    (tmp_path / "allreduce" / "rank0.json").write_text(json.dumps({"rank": 0, "buckets": 6, "span_s": [9.0, 0.1, 0.3]}))
    assert allreduce_probe.allreduce_span(tmp_path, skip_steps=1) == {
        "allreduce_s": pytest.approx(0.2),
        "steps": 3,
        "buckets_per_step": 2.0,
    }


@pytest.mark.slurm
def test_speed_comparison_runs_as_a_job_on_a_compute_node(slurm_cluster, tmp_path):
    out = tmp_path / "results"
    command = ("-m", "benchmarks.speed.slurm", "--gpus-per-node", "0", "--work", str(tmp_path / "work"), "--time", "10")
    speed_args = ("--", "--quick", "--device", "cpu", "--repeats", "1", "--no-plot", "--out", str(out))
    proc = slurm_cluster.run(sys.executable, *command, *speed_args, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"results in {out}" in proc.stdout
    record = json.loads((out / "speed.json").read_text())
    assert record["environment"]["hostname"] == slurm_cluster.hosts[0]
    (job_folder,) = (tmp_path / "work").iterdir()  # hpc-seaice submit's records: status can follow it
    (submitted,) = [json.loads(line) for line in (job_folder / "slurm" / "submitted.jsonl").read_text().splitlines()]
    assert slurm_cluster.state(submitted["job_id"]) == "COMPLETED"
    assert "benchmarks.speed --quick" in Path(submitted["stdout"]).read_text()
