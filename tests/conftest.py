"""Shared fixtures.

Data: ``tiny_dataset`` (grid 32) and ``tiny_dataset_64`` (grid 64) are synthetic data sets with
51 samples every 73 days over 2009-2018 (train 41, validation 5, test 5) in shards of 8, built
once per session in a few seconds. They are shared: tests that modify a data set must work on
``tiny_dataset_copy``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from repo_state import changes, tree_state

ROOT = Path(__file__).resolve().parent.parent

# Checkpoints are signed with a per-user key (hpc_seaice/runtime/signing.py): the tests and every
# process they start use a key of their own, never the user's ~/.config/hpc-seaice/key.
_KEY_DIR = tempfile.mkdtemp(prefix="hpc-seaice-test-key-")
atexit.register(shutil.rmtree, _KEY_DIR, ignore_errors=True)
os.environ["HPC_SEAICE_KEY_FILE"] = os.path.join(_KEY_DIR, "key")

TINY_FREQ = "73D"
TINY_SHARD_SIZE = 8


def _make_tiny(root: Path, grid: int, seed: int) -> Path:
    from hpc_seaice.data.synth.generate import generate

    generate(root, grid=grid, freq=TINY_FREQ, seed=seed, shard_size=TINY_SHARD_SIZE, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32 x 32 synthetic data set (read-only: copy it before changing anything)."""
    return _make_tiny(tmp_path_factory.mktemp("tiny32"), 32, seed=0)


@pytest.fixture(scope="session")
def tiny_dataset_64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 x 64 synthetic data set (read-only: copy it before changing anything)."""
    return _make_tiny(tmp_path_factory.mktemp("tiny64"), 64, seed=1)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: faster on small tensors, and on a shared 2-core machine two OpenMP
    threads that lose their core to another process spin at every barrier."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_dataset_copy(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A private, writable copy of ``tiny_dataset``."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_dataset, dst)
    return dst


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note the repository's state (what was dirty before the run is not the run's doing)."""
    session.config.stash[_TREE_BEFORE] = tree_state(ROOT)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if it left files in the repository: tests write into temporary folders only."""
    before = session.config.stash.get(_TREE_BEFORE, None)
    if before is None or (after := tree_state(ROOT)) is None:
        return
    added = changes(before, after)
    if added:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "the tests wrote into the repository (write into tmp_path instead):\n  " + "\n  ".join(added)
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(text, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_TREE_BEFORE = pytest.StashKey[set[str] | None]()


# Real SLURM clusters for the tests marked `slurm` and `multinode` (see tests/conftest_slurm.py).
from conftest_slurm import slurm_cluster, slurm_clusters, two_node_cluster  # noqa: E402, F401
