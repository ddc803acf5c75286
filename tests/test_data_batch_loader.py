"""Batch-level reading: coalesced reads, the in-memory option and the shared-ring BatchLoader."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hpc_seaice.data.format import shard_reader
from hpc_seaice.data.loading.batch_loader import (
    MAX_PER_ITEM,
    BatchLoader,
    NumberedBatches,
    batches_per_item,
    page_lock,
    ring_slots,
)
from hpc_seaice.data.loading.dataset import GlobalBatchSampler, ShardedDataset


def expected_batches(ds: ShardedDataset, sampler, batch: int, count: int) -> list[torch.Tensor]:
    """Batches built sample by sample with ``ds[i]`` (an independent path through the reader)."""
    stream = iter(sampler)
    return [torch.stack([ds[i] for i in itertools.islice(stream, batch)]) for _ in range(count)]


def test_numbered_batches_cover_the_stream_in_order():
    batches = list(NumberedBatches(range(10), 4))
    assert batches == [(0, [[0, 1, 2, 3]]), (1, [[4, 5, 6, 7]]), (2, [[8, 9]])]
    items = list(NumberedBatches(range(11), 2, per_item=3))  # three batches per hand-over, numbered on
    assert items == [(0, [[0, 1], [2, 3], [4, 5]]), (3, [[6, 7], [8, 9], [10]])]
    assert list(NumberedBatches(range(12), 2, per_item=3))[-1] == (3, [[6, 7], [8, 9], [10, 11]])
    for bad in ({"batch_size": 0}, {"batch_size": 2, "per_item": 0}):
        with pytest.raises(ValueError):
            NumberedBatches(range(3), **bad)


def test_batches_per_hand_over_fill_the_hand_over_size_within_bounds():
    assert batches_per_item(2 << 20, 8 << 20) == 4  # 8 latents of 16 x 64 x 64: 2 MB a batch
    assert batches_per_item(3 << 20, 8 << 20) == 3  # rounded up, so a hand-over holds at least 8 MB
    assert batches_per_item(42 << 20, 8 << 20) == 1  # 512 x 512 fields: one batch is enough
    assert batches_per_item(1, 8 << 20) == MAX_PER_ITEM and batches_per_item(2 << 20, 0) == 1
    assert ring_slots(2, 2, 3, per_item=4) == 3 + 4 * (1 + 2 * 2) and ring_slots(0, 2, 3, per_item=4) == 4


def test_neighbouring_samples_are_read_with_one_call(tiny_dataset, monkeypatch):
    ds = ShardedDataset(tiny_dataset, split=None)
    calls = []
    real = os.preadv

    def counting(fd, buffers, offset):
        calls.append(len(buffers))
        return real(fd, buffers, offset)

    monkeypatch.setattr(shard_reader.os, "preadv", counting)
    out = np.empty((6, ds.num_channels, *ds.grid), np.float32)
    ds.read_batch([5, 3, 4, 2, 1, 0], out)  # one shard (shards hold 8), all neighbours
    assert calls == [6]
    for k, i in enumerate([5, 3, 4, 2, 1, 0]):
        torch.testing.assert_close(torch.from_numpy(out[k]), ds[i], rtol=0, atol=0)
    calls.clear()
    ds.read_batch([0, 2, 9], out[:3])  # no neighbours; 9 is in the next shard
    assert sorted(calls) == [1, 1, 1]


def test_in_memory_dataset_gives_the_same_samples_without_files(tiny_dataset):
    disk = ShardedDataset(tiny_dataset, split="train")
    memory = ShardedDataset(tiny_dataset, split="train", in_memory=True)
    assert not memory._handles  # everything read, files closed
    idx = [7, 0, 40, 3]
    out = np.empty((4, memory.num_channels, *memory.grid), np.float32)
    memory.read_batch(idx, out)
    for k, i in enumerate(idx):
        torch.testing.assert_close(torch.from_numpy(out[k]), disk[i], rtol=0, atol=0)
        torch.testing.assert_close(memory[i], disk[i], rtol=0, atol=0)
    assert not memory._handles


@pytest.mark.parametrize("workers, in_memory, per_item", [(0, False, 1), (2, False, 1), (2, True, 1), (2, False, 3)])
def test_batch_loader_matches_per_sample_reads_and_keeps_held_batches(tiny_dataset, workers, in_memory, per_item):
    ds = ShardedDataset(tiny_dataset, split="train", in_memory=in_memory)
    batch, steps, hold = 4, 40, 2  # 160 samples: batches span epochs (41) and the ring wraps around
    sampler = GlobalBatchSampler(len(ds), global_batch=batch, rank=0, world_size=1, seed=3)
    batch_bytes = 4 * batch * ds.sample_channels * ds.grid[0] * ds.grid[1]
    loader = BatchLoader(
        ds, sampler, batch, num_workers=workers, prefetch_factor=2, hold=hold, handover_bytes=per_item * batch_bytes
    )
    assert loader.per_item == per_item and loader.ring.shape[0] == ring_slots(workers, 2, hold, per_item)
    expected = expected_batches(ShardedDataset(tiny_dataset, split="train"), sampler, batch, steps)
    held: list[torch.Tensor] = []
    for step, x in enumerate(itertools.islice(iter(loader), steps)):
        assert x.shape == (batch, ds.num_channels, *ds.grid) and x.dtype == torch.float32
        held = (held + [x])[-hold:]  # the consumer keeps the last `hold` batches alive
        for back, h in enumerate(reversed(held)):
            torch.testing.assert_close(h, expected[step - back], rtol=0, atol=0)
    loader.close()


@pytest.mark.parametrize("workers, per_item", [(0, 1), (2, 1), (2, 3)])
def test_a_new_pass_keeps_the_batches_held_from_the_last_one(tiny_dataset, workers, per_item):
    """A second ``iter()`` (the next epoch of a finite sampler, or a pass after one left early) must
    not write into the last ``hold`` batches the consumer received: its numbering, and so its slots,
    continue where the consumer stopped. A pass of slots + 1 batches ends in slot 0, where a pass
    that numbered from 0 again wrote its first batch."""
    ds = ShardedDataset(tiny_dataset, split="train")
    batch, hold = 2, 2
    batch_bytes = 4 * batch * ds.sample_channels * ds.grid[0] * ds.grid[1]
    slots = ring_slots(workers, 1, hold, per_item)
    stream = [i % len(ds) for i in range((slots + 1) * batch)]
    loader = BatchLoader(
        ds, stream, batch, num_workers=workers, prefetch_factor=1, hold=hold, handover_bytes=per_item * batch_bytes
    )
    assert loader.ring.shape[0] == slots and loader.per_item == per_item
    expected = expected_batches(ShardedDataset(tiny_dataset, split="train"), stream, batch, slots + 1)
    first = list(loader)
    assert len(first) == slots + 1
    torch.testing.assert_close(first[-1], expected[-1], rtol=0, atol=0)
    again = iter(loader)
    torch.testing.assert_close(next(again), expected[0], rtol=0, atol=0)
    torch.testing.assert_close(first[-1], expected[-1], rtol=0, atol=0)  # still held: the last `hold` received
    left = list(itertools.islice(again, 3))  # leave this pass early; the next one starts after what was received
    resumed = next(iter(loader))
    torch.testing.assert_close(left[-1], expected[3], rtol=0, atol=0)
    torch.testing.assert_close(resumed, expected[0], rtol=0, atol=0)
    loader.close()


WORKER_ERROR = """
import sys
from hpc_seaice.data.loading.batch_loader import BatchLoader
from hpc_seaice.errors import UserError
from hpc_seaice.runtime.stopping import ignore_stop_signals


class FailsAt6:  # a batch holding sample 6 raises, as a corrupt sample does in a worker
    sample_channels, grid = 1, (2, 2)

    def __len__(self):
        return 100

    def read_batch(self, indices, out):
        if 6 in indices:
            raise UserError("sample 6: corrupt")
        out[...] = 0
        return out


loader = BatchLoader(FailsAt6(), range(100), 2, num_workers=2, worker_init_fn=ignore_stop_signals)
try:
    for _ in loader:
        pass
except UserError as exc:
    kept = exc  # as a caller that reports the error keeps it (and with it the loader's iterator)
    loader.close()
    print(kept)
    sys.exit(2)
"""


def test_a_process_whose_loader_worker_failed_exits_after_close():
    """The trainer's workers ignore SIGTERM. After an error raised in one, the error's traceback keeps
    the loader's iterator and its workers alive, and at exit Python waited for them forever (a
    corrupt sample hung the training job): close() must end them."""
    proc = subprocess.run([sys.executable, "-c", WORKER_ERROR], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout.strip() == "sample 6: corrupt", proc.stderr[-2000:]


class FakeCudart:
    """What the ring asks of the CUDA runtime, recorded; ``fail``: cudaHostRegister's error code."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def cudaHostRegister(self, pointer: int, nbytes: int, flags: int) -> int:  # noqa: N802 - CUDA's name
        self.calls.append(("register", pointer, nbytes, flags))
        return self.fail

    def cudaHostUnregister(self, pointer: int) -> int:  # noqa: N802
        self.calls.append(("unregister", pointer))
        return 0


def test_the_page_locked_ring_registers_once_reads_the_same_and_unregisters_on_close(tiny_dataset, monkeypatch):
    """The GPU branch of the ring (pin_memory) with a fake CUDA runtime: the whole ring is registered
    once, batches are the ones read without it, and close() unregisters it exactly once."""
    fake = FakeCudart()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "cudart", lambda: fake)
    ds = ShardedDataset(tiny_dataset, split="train")
    loader = BatchLoader(ds, range(12), 4, pin_memory=True)
    ring = loader.ring
    assert loader.pinned and fake.calls == [("register", ring.data_ptr(), ring.numel() * 4, 0)]
    expected = expected_batches(ShardedDataset(tiny_dataset, split="train"), range(12), 4, 3)
    for got, want in zip(loader, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    loader.close()
    loader.close()
    assert fake.calls[1:] == [("unregister", ring.data_ptr())] and not loader.pinned
    assert not BatchLoader(ds, range(4), 4, pin_memory=False).pinned and len(fake.calls) == 2


def test_a_failed_page_lock_is_an_error_and_no_cuda_is_nothing_to_do(monkeypatch):
    ring = torch.empty(3, 5)
    with pytest.raises(RuntimeError, match="cudaHostRegister of the batch ring failed with CUDA error 2"):
        page_lock(ring, FakeCudart(fail=2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert page_lock(ring) is None
