"""Batches that cross the worker boundary as two integers: a shared ring of batch buffers.

Why: a torch DataLoader sends every batch from a worker to the main process through a fresh
shared-memory segment (allocate, map, pass a file descriptor, map again, fault the pages in).
For small samples (a 16 x 64 x 64 latent is 256 KB) that costs more than reading the batch:
on a 2-core VM, DataLoader workers delivered a fifth of a raw h5py read even for a dataset of
zeros. Here the main process allocates one ring of batch buffers in shared memory before the
workers start; a worker reads batch number ``s`` straight into slot ``s % slots`` (one
contiguous multi-sample read per run of neighbouring samples, normalised per batch) and hands
over only ``(slot, size)``. The DataLoader runs with ``batch_size=None`` over numbered batches.

Slot reuse is safe by construction: the DataLoader keeps at most ``num_workers x
prefetch_factor`` batches in flight, so with ``slots = hold + 1 + num_workers x
prefetch_factor`` no worker writes into any of the last ``hold`` batches the consumer received.
A consumer that keeps more batches alive than ``hold`` (e.g. gradient accumulation over k
micro-batches keeps k, plus the previous step's while fetching) must raise ``hold`` or copy.

On a GPU (``pin_memory=True``) the ring is page-locked once (``cudaHostRegister``), so every
batch copies to the device asynchronously (``.to(device, non_blocking=True)``) without the
DataLoader's extra copy into a pinned buffer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class NumberedBatches(Sampler[tuple[int, list[int]]]):
    """Groups a per-sample index stream into ``(batch number, indices)`` of ``batch_size`` each.

    The last batch of a finite stream may be shorter; an infinite stream (the trainer's
    :class:`~hpc_seaice.data.dataset.GlobalBatchSampler`) never ends.
    """

    def __init__(self, sampler: Iterable[int], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        stream = iter(self.sampler)
        for number in itertools.count():
            chunk = [int(i) for i in itertools.islice(stream, self.batch_size)]
            if not chunk:
                return
            yield number, chunk


class RingFill(Dataset):
    """Worker side: ``ring_fill[(number, indices)]`` fills slot ``number % slots``, returns ``(slot, n)``."""

    def __init__(self, dataset: Any, ring: torch.Tensor) -> None:
        self.dataset = dataset
        self.ring = ring

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, list[int]]) -> tuple[int, int]:
        number, indices = key
        slot = number % self.ring.shape[0]
        n = len(indices)
        self.dataset.read_batch(indices, self.ring[slot, :n].numpy())
        return slot, n


def ring_slots(num_workers: int, prefetch_factor: int, hold: int) -> int:
    """Slots that keep the last ``hold`` delivered batches intact while workers run ahead."""
    return hold + 1 + (num_workers * prefetch_factor if num_workers else 0)


class BatchLoader:
    """Iterable of batches [n, C, H, W] (float32 views of a shared ring) from a batch-reading dataset.

    ``dataset`` needs ``read_batch(indices, out)``, ``sample_channels`` (channels of one item) and ``grid``
    (:class:`~hpc_seaice.data.dataset.ShardedDataset`); ``sampler`` yields sample indices. With
    ``num_workers=0`` batches are read in the calling process into the same ring.
    """

    def __init__(
        self,
        dataset: Any,
        sampler: Iterable[int],
        batch_size: int,
        *,
        num_workers: int = 0,
        prefetch_factor: int = 2,
        hold: int = 2,
        pin_memory: bool = False,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
    ) -> None:
        if num_workers < 0 or prefetch_factor < 1 or hold < 1:
            raise ValueError("num_workers must be >= 0, prefetch_factor and hold >= 1")
        slots = ring_slots(num_workers, prefetch_factor, hold)
        self.ring = torch.empty((slots, batch_size, dataset.sample_channels, *dataset.grid), dtype=torch.float32)
        if num_workers:
            self.ring.share_memory_()
        self.pinned = False
        if pin_memory and torch.cuda.is_available():
            nbytes = self.ring.numel() * self.ring.element_size()
            torch.cuda.cudart().cudaHostRegister(self.ring.data_ptr(), nbytes, 0)
            self.pinned = True
        self.fill = RingFill(dataset, self.ring)
        self.batches = NumberedBatches(sampler, batch_size)
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
        if self.loader is None:
            for key in self.batches:
                slot, n = self.fill[key]
                yield self.ring[slot, :n]
            return
        for slot, n in self.loader:
            yield self.ring[int(slot), : int(n)]

    def close(self) -> None:
        """Unpin the ring (GPU) and end the workers.

        Ended here, not left to the loader's last reference: after an error raised in a worker
        (a corrupt sample), the error's traceback keeps the DataLoader's iterator alive, and
        workers that ignore SIGTERM (the trainer's) then block the interpreter's exit forever.
        """
        if self.pinned:
            torch.cuda.cudart().cudaHostUnregister(self.ring.data_ptr())
            self.pinned = False
        iterator = getattr(self.loader, "_iterator", None)  # persistent workers: the DataLoader keeps it
        if iterator is not None:
            iterator._shutdown_workers()  # what its __del__ does; repeated calls are no-ops
        self.loader = None
