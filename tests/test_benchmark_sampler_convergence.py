"""benchmarks/sampler_convergence.py: the spectrum measurement, the node table and the report.

The measurement is checked against numpy's SVD of the same states (both the covariance and the
Gram path), the node table against the curve it encodes, the spectrum file that the benchmark and
the sampler test both read against the measured nodes in the committed results, and the two
expansions of it (the test's own and the benchmark's) against each other.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import test_diffusion_sampler_spectrum as sampler_test
from helpers import ROOT

from benchmarks import sampler_convergence as sc


@pytest.mark.parametrize("n, dim", [(60, 12), (12, 60)])  # covariance (n > D) and Gram (n < D)
def test_stds_of_equals_the_singular_values_of_the_centred_states(n, dim):
    x = np.random.default_rng(0).standard_normal((n, dim)) * np.geomspace(5.0, 0.01, dim) + 3.0
    blocks = [x[i : i + 7] for i in range(0, n, 7)]
    got = sc.stds_of(iter(blocks), n, dim)
    want = np.linalg.svd(x - x.mean(0), compute_uv=False) / math.sqrt(n - 1)
    k = min(n - 1, dim)
    np.testing.assert_allclose(got[:k], want[:k], rtol=1e-9)
    assert got.size == min(n, dim) and got[k:].max(initial=0.0) < 1e-6 * got[0]


def test_pc_stds_of_a_data_set_is_the_spectrum_of_its_normalised_ocean_states(tiny_dataset):
    from hpc_seaice.data.loading.dataset import ShardedDataset

    ds = ShardedDataset(tiny_dataset, "train")
    ocean = ds.static.mask > 0.5
    x = np.stack([ds[i].numpy()[:, ocean].ravel() for i in range(len(ds))]).astype(np.float64)
    ds.close()
    want = np.linalg.svd(x - x.mean(0), compute_uv=False) / math.sqrt(len(x) - 1)
    got = sc.pc_stds(tiny_dataset, block=5)
    np.testing.assert_allclose(got[: len(x) - 1], want[: len(x) - 1], rtol=1e-6, atol=1e-9 * want[0])


def test_spectrum_nodes_reproduce_the_curve_within_their_tolerance():
    k = np.arange(1, 3001)
    curve = 40.0 * k**-0.6 * np.exp(-((k / 2500.0) ** 4))  # a power law that steepens at the end
    curve = np.concatenate([curve, [1e-5, 1e-7]])  # a cliff below the floor is dropped
    nodes = sc.spectrum_nodes(curve, floor=1e-3, tol=0.02)
    assert nodes[0][0] == 1 and nodes[-1][0] == int((curve >= 1e-3).sum())
    assert len(nodes) < 40  # a power law needs few nodes
    back = sc.expand_nodes(nodes)
    kept = curve[curve >= 1e-3]
    assert back.size == kept.size and np.abs(back / kept - 1).max() < 0.021  # 4 significant digits


def test_the_sampler_test_reads_the_benchmarks_spectrum():
    assert sampler_test.SPECTRUM_FILE == sc.SPECTRUM_FILE and sampler_test.NODES == sc.SPECTRUM_NODES
    assert len(sc.SPECTRUM_NODES) == 29 and sc.SPECTRUM_NODES[-1] == (8465, 0.003042)
    assert sampler_test.HEAD == sc.HEAD and sampler_test.TO_512 == sc.PAPER_GRID / sc.GRID
    np.testing.assert_allclose(sampler_test.every_direction().numpy(), sc.spectrum_stds())
    # and the committed measurement of the 64 x 64 set gave exactly these nodes
    record = json.loads((ROOT / "benchmarks" / "results" / "sampler_convergence.json").read_text())
    grids = {v["grid"]: v for v in record["summary"]["measured"].values() if isinstance(v, dict)}
    assert [tuple(n) for n in grids[64]["nodes"]] == list(sc.SPECTRUM_NODES)


@pytest.mark.parametrize(
    "nodes",
    [[], [[2, 5.0], [3, 4.0]], [[1, 5.0], [1, 4.0]], [[1, 5.0], [3, 6.0]], [[1, 5.0], [3, 0.0]]],
    ids=["empty", "not-from-1", "repeated-k", "std-rising", "std-zero"],
)
def test_a_malformed_spectrum_file_is_one_error_naming_it(tmp_path, nodes):
    path = tmp_path / "spectrum.json"
    path.write_text(json.dumps({"nodes": nodes}))
    with pytest.raises(ValueError, match="spectrum.json: nodes must start at k = 1"):
        sc.read_spectrum_nodes(path)
    path.write_text(json.dumps({"nodes": [[1, 5.0], [3, 5.0], [9, 0.5]]}))
    assert sc.read_spectrum_nodes(path) == ((1, 5.0), (3, 5.0), (9, 0.5))  # a flat stretch is allowed


def test_the_report_names_a_passing_default_and_a_failing_old_default(tmp_path):
    assert sc.main(["--out", str(tmp_path), "--samples", "512"]) == 0
    record = json.loads((tmp_path / "sampler_convergence.json").read_text())
    rows = {(r["spacing"], r["steps"], r["sigma_min"]): r for r in record["results"]}
    default = rows[("log-snr", 30, float(f"{sc.SIGMA_MIN:.3g}"))]
    old = rows[("edm rho 7", 28, float(f"{sc.SIGMA_MIN:.3g}"))]
    assert default["passes 5 %"] and not old["passes 5 %"] and old["at 0.01 %"] > 15
    assert record["summary"]["monte_carlo"]["samples"] == 512
    md = (tmp_path / "sampler_convergence.md").read_text()
    assert "| log-snr | 30 | 59 |" in md and "The old default (EDM rho 7, 28 steps" in md
