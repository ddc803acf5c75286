"""Batches that cross the worker boundary as two integers: a shared ring of batch buffers.

Why: a torch DataLoader sends every batch from a worker to the main process through a fresh
shared-memory segment (allocate, map, pass a file descriptor, map again, fault the pages in).
For small samples (a 16 x 64 x 64 latent is 256 KB) that costs more than reading the batch:
on a 2-core VM, DataLoader workers delivered a fifth of a raw h5py read even for a dataset of
zeros. Here the main process allocates one ring of batch buffers in shared memory before the
workers start; a worker reads batch number ``s`` straight into slot ``s % slots`` (one
contiguous multi-sample read per run of neighbouring samples, normalised per batch) and hands
over only its batch number and size. The DataLoader runs with ``batch_size=None`` over numbered
batches. Each hand-over still costs a round trip through the DataLoader's queues (pickling, a
pipe, a wake-up: tenths of a millisecond), as much as reading a 2 MB batch from the page cache;
so a worker fills ``per_item`` consecutive batches per hand-over, sized to ``handover_bytes``
(8 MB by default: 4 batches of 8 latents of 16 x 64 x 64, one batch of 512 x 512 fields).

Slot reuse is safe by construction: the DataLoader keeps at most ``num_workers x
prefetch_factor`` items (of ``per_item`` batches) in flight beyond the one the consumer reads, so
with ``slots = hold + per_item x (1 + num_workers x prefetch_factor)`` no worker writes into any
of the last ``hold`` batches the consumer received.
A consumer that keeps more batches alive than ``hold`` (e.g. gradient accumulation over k
micro-batches keeps k, plus the previous step's while fetching) must raise ``hold`` or copy.
A new pass (``iter()`` again: the next epoch of a finite sampler, or after leaving a pass early)
numbers its batches on from the last one the consumer received, not from 0: the DataLoader's
reset lets the old pass's workers finish first, so the same bound holds across passes.

On a GPU (``pin_memory=True``) the ring is page-locked once (``cudaHostRegister``), so every
batch copies to the device asynchronously (``.to(device, non_blocking=True)``) without the
DataLoader's extra copy into a pinned buffer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.context import BaseContext
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class NumberedBatches(Sampler[tuple[int, list[list[int]]]]):
    """Groups a per-sample index stream into items ``(first batch number, [indices of each batch])``.

    Each item holds ``per_item`` consecutive batches of ``batch_size`` samples (the last item of a
    finite stream may hold fewer, its last batch fewer samples); an infinite stream (the
    trainer's :class:`~hpc_seaice.data.loading.dataset.GlobalBatchSampler`) never ends.
    """

    def __init__(self, sampler: Iterable[int], batch_size: int, per_item: int = 1) -> None:
        if batch_size < 1 or per_item < 1:
            raise ValueError(f"batch_size and per_item must be >= 1, got {batch_size} and {per_item}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.per_item = per_item
        self.start = 0  # number of the first batch of the next pass (BatchLoader continues its numbering)

    def __iter__(self) -> Iterator[tuple[int, list[list[int]]]]:
        stream = iter(self.sampler)
        for first in itertools.count(self.start, self.per_item):
            item = []
            for _ in range(self.per_item):
                chunk = [int(i) for i in itertools.islice(stream, self.batch_size)]
                if not chunk:
                    break
                item.append(chunk)
            if not item:
                return
            yield first, item
            if len(item) < self.per_item or len(item[-1]) < self.batch_size:
                return


class BatchSource(Protocol):
    """What the loader needs of a data set (:class:`~hpc_seaice.data.loading.dataset.ShardedDataset`
    is one): its length, the channels and grid of one item, and a read of a batch into a buffer."""

    sample_channels: int
    grid: tuple[int, int]

    def __len__(self) -> int: ...

    def read_batch(self, indices: list[int], out: np.ndarray) -> None: ...


class RingFill(Dataset):
    """Worker side: ``ring_fill[(first, batches)]`` fills slots ``first + j`` (mod slots), returns sizes."""

    def __init__(self, dataset: BatchSource, ring: torch.Tensor) -> None:
        self.dataset = dataset
        self.ring = ring

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, list[list[int]]]) -> tuple[int, list[int]]:
        first, batches = key
        for j, indices in enumerate(batches):
            slot = (first + j) % self.ring.shape[0]
            self.dataset.read_batch(indices, self.ring[slot, : len(indices)].numpy())
        return first, [len(indices) for indices in batches]


def ring_slots(num_workers: int, prefetch_factor: int, hold: int, per_item: int = 1) -> int:
    """Slots that keep the last ``hold`` delivered batches intact while workers run ahead."""
    return hold + (per_item * (1 + num_workers * prefetch_factor) if num_workers else 1)


MAX_PER_ITEM = 16  # tiny batches: enough to hide the hand-over, without a ring of thousands of slots


def batches_per_item(batch_bytes: int, handover_bytes: int) -> int:
    """Consecutive batches a worker fills per hand-over: ``handover_bytes`` worth, 1 to ``MAX_PER_ITEM``."""
    return min(MAX_PER_ITEM, max(1, -(-handover_bytes // max(batch_bytes, 1))))


class CudaRuntime(Protocol):
    """The two calls of ``torch.cuda.cudart()`` that page-locking uses (tests pass a fake)."""

    def cudaHostRegister(self, pointer: int, size: int, flags: int) -> int: ...  # noqa: N802 (CUDA's name)

    def cudaHostUnregister(self, pointer: int) -> int: ...  # noqa: N802 (CUDA's name)


def page_lock(ring: torch.Tensor, cudart: CudaRuntime | None = None) -> Callable[[], None] | None:
    """Page-lock ``ring`` in place (``cudaHostRegister``) so batches copy to a GPU asynchronously.

    Returns the function that unlocks it again, or None where there is no CUDA (nothing to do).
    ``cudart``: the CUDA runtime (default ``torch.cuda.cudart()``); the one branch of the ring that
    needs a GPU is this function, so tests run it with a fake runtime.
    """
    if cudart is None:
        if not torch.cuda.is_available():
            return None
        cudart = torch.cuda.cudart()
    pointer = ring.data_ptr()
    code = cudart.cudaHostRegister(pointer, ring.numel() * ring.element_size(), 0)
    if int(code) != 0:  # cudaSuccess; torch's binding returns the error code rather than raising
        raise RuntimeError(f"cudaHostRegister of the batch ring failed with CUDA error {int(code)}")

    def unlock() -> None:
        cudart.cudaHostUnregister(pointer)

    return unlock


class BatchLoader:
    """Iterable of batches [n, C, H, W] (float32 views of a shared ring) from a batch-reading dataset.

    ``dataset`` needs ``read_batch(indices, out)``, ``sample_channels`` (channels of one item) and ``grid``
    (:class:`~hpc_seaice.data.loading.dataset.ShardedDataset`); ``sampler`` yields sample indices. With
    ``num_workers=0`` batches are read in the calling process into the same ring.
    """

    @property
    def pinned(self) -> bool:
        """Whether the ring is page-locked (``pin_memory`` with CUDA)."""
        return self._unpin is not None

    def __init__(
        self,
        dataset: BatchSource,
        sampler: Iterable[int],
        batch_size: int,
        *,
        num_workers: int = 0,
        prefetch_factor: int = 2,
        hold: int = 2,
        pin_memory: bool = False,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: BaseContext | str | None = None,
        handover_bytes: int = 8 << 20,
    ) -> None:
        if num_workers < 0 or prefetch_factor < 1 or hold < 1 or handover_bytes < 0:
            raise ValueError("num_workers and handover_bytes must be >= 0, prefetch_factor and hold >= 1")
        shape = (batch_size, dataset.sample_channels, *dataset.grid)
        batch_bytes = 4 * math.prod(shape)
        self.per_item = batches_per_item(batch_bytes, handover_bytes) if num_workers else 1
        slots = ring_slots(num_workers, prefetch_factor, hold, self.per_item)
        self.ring = torch.empty((slots, *shape), dtype=torch.float32)
        if num_workers:
            self.ring.share_memory_()
        self._unpin = page_lock(self.ring) if pin_memory else None
        self.fill = RingFill(dataset, self.ring)
        self.batches = NumberedBatches(sampler, batch_size, self.per_item)
        self.received = 0  # batches handed to the consumer: the next pass numbers on from here
        self.loader: DataLoader | None = None
        if num_workers:
            self.loader = DataLoader(
                self.fill,
                batch_size=None,
                sampler=self.batches,
                num_workers=num_workers,
                prefetch_factor=prefetch_factor,
                persistent_workers=True,
                worker_init_fn=worker_init_fn,
                multiprocessing_context=multiprocessing_context,
            )

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.batches.start = self.received  # set before iter(loader) draws the pass's sampler iterator
        items = (self.fill[key] for key in self.batches) if self.loader is None else iter(self.loader)
        slots = self.ring.shape[0]
        for first, sizes in items:
            for j, n in enumerate(sizes):
                self.received = int(first) + j + 1
                yield self.ring[(int(first) + j) % slots, : int(n)]

    def close(self) -> None:
        """Unpin the ring (GPU) and end the workers.

        Ended here, not left to the loader's last reference: after an error raised in a worker
        (a corrupt sample), the error's traceback keeps the DataLoader's iterator alive, and
        workers that ignore SIGTERM (the trainer's) then block the interpreter's exit forever.
        """
        if self._unpin is not None:
            self._unpin()
            self._unpin = None
        iterator = getattr(self.loader, "_iterator", None)  # persistent workers: the DataLoader keeps it
        if iterator is not None:
            iterator._shutdown_workers()  # what its __del__ does; repeated calls are no-ops
        self.loader = None
