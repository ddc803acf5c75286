"""The two-host test cluster itself (tests/slurm/two_nodes.sh): two SLURM nodes with their own
hostnames and addresses, and `hpc-seaice submit` placing ranks on both. The multi-node training,
DeepSpeed, torchrun and fault tests build on the same ``two_node_cluster`` fixture."""

from __future__ import annotations

import re

import pytest
from helpers import read_metrics, tiny_diffusion_config, write_config

pytestmark = pytest.mark.multinode


def test_two_hosts_with_their_own_names_and_addresses(two_node_cluster):
    hosts = two_node_cluster.run("srun", "-N", "2", "-n", "2", "hostname", timeout=60).stdout.split()
    assert sorted(hosts) == ["n1", "n2"]
    addresses = two_node_cluster.run(
        "srun", "-N", "2", "-n", "2", "-l", "ip", "-4", "-o", "addr", "show", "hsnet0", timeout=60
    ).stdout
    assert "10.77.0.1/24" in addresses and "10.77.0.2/24" in addresses


def test_submit_places_one_rank_on_each_host(two_node_cluster, tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    path = write_config(tmp_path / "c.yaml", tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 3}))
    proc = two_node_cluster.hpc_seaice(
        "submit", str(path), "--nodes=2", "--gpus-per-node=0", "--tasks-per-node=1", "--time=10", "--wait", timeout=180
    )
    (job,) = re.findall(r"submitted job (\d+)", proc.stdout)
    log = (run_dir / "slurm" / f"{job}_0_log.out").read_text()
    assert "2 rank(s) on 2 host(s) [n1, n2]" in log, log
    assert [m["step"] for m in read_metrics(run_dir)] == [1, 2, 3]
