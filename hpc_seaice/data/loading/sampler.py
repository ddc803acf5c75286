"""Which samples each rank reads: the global batch stream for training, partitions for passes.

The sampler defines one global stream of sample indices, the concatenation of per-epoch
permutations, and gives each rank a contiguous slice of every global batch. The stream does not
depend on the number of ranks, so 1 and N ranks train on the same global batches, and a run
resumes from a global sample count even with another world size (edm2's convention).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from hpc_seaice.errors import UserError


class GlobalBatchSampler(Sampler[int]):
    """Infinite per-rank sampler over one global stream of shuffled epochs.

    Stream position p maps to epoch ``p // num_samples`` and to ``perm_e[p % num_samples]`` with
    ``perm_e = numpy.random.default_rng((seed, e)).permutation(num_samples)``. Global step s
    covers positions [s*B, (s+1)*B); rank r yields the contiguous slice
    [s*B + r*B/W, s*B + (r+1)*B/W). Remainder policy: nothing is dropped or repeated; when B does
    not divide the epoch, a global batch spans the end of one epoch and the start of the next, so
    every sample appears exactly once per epoch. Iteration starts at ``start_sample`` (a global
    sample count, the resume position; a multiple of B unless ``train.batch_size`` changed).
    """

    def __init__(
        self,
        num_samples: int,
        *,
        global_batch: int,
        rank: int,
        world_size: int,
        seed: int,
        start_sample: int = 0,
    ) -> None:
        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if global_batch < 1 or global_batch % world_size:
            raise UserError(
                f"train.batch_size: global batch {global_batch} is not a positive multiple of the "
                f"{world_size} processes"
            )
        if start_sample < 0:
            raise ValueError("start_sample must be >= 0")
        self.num_samples = int(num_samples)
        self.global_batch = int(global_batch)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.local_batch = self.global_batch // self.world_size
        self.seed = int(seed)
        self.start_sample = int(start_sample)
        self._perm_epoch = -1
        self._perm = np.zeros(0, np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch ``epoch`` (cached: positions are visited in increasing order)."""
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng((self.seed, epoch)).permutation(self.num_samples)
            self._perm_epoch = epoch
        return self._perm

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """Dataset indices at global stream ``positions``."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty(positions.shape, np.int64)
        epochs = positions // self.num_samples
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self.permutation(int(e))[positions[sel] % self.num_samples]
        return out

    def positions(self, step: int) -> np.ndarray:
        """Stream positions of this rank's samples in the ``step``-th global batch from ``start_sample``.

        With ``start_sample = 0`` that is global step ``step``. Iteration yields exactly these
        positions' samples, so a consumer (the trainer's per-sample loss noise) and the data
        cannot drift apart, also when a resumed run changed ``train.batch_size``.
        """
        lo = self.start_sample + step * self.global_batch + self.rank * self.local_batch
        return np.arange(lo, lo + self.local_batch, dtype=np.int64)

    def global_positions(self, step: int) -> np.ndarray:
        """All B positions of the ``step``-th global batch from ``start_sample`` (every rank's slice, in rank order)."""
        lo = self.start_sample + step * self.global_batch
        return np.arange(lo, lo + self.global_batch, dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        for step in itertools.count():
            for idx in self.indices(self.positions(step)):
                yield int(idx)


def partition(n: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous share of ``range(n)``; the first ``n % world_size`` get one more.

    For finite passes (encoding, sampling, evaluation): the shares cover ``range(n)`` exactly once.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    base, extra = divmod(int(n), int(world_size))
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))
