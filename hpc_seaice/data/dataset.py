"""Reading a sharded data set for training: the Dataset, the global batch sampler, partitions.

The reader keeps no HDF5 handle from ``__init__``: each process (the main one or a DataLoader
worker, forked or spawned) opens the shards it touches on first use, and a fork is detected by
its pid, so HDF5 state is never shared between processes. A sample is one uncompressed chunk,
read with a single call straight into the output buffer and normalised in place.

The sampler defines one global stream of sample indices, the concatenation of per-epoch
permutations, and gives each rank a contiguous slice of every global batch. The stream does not
depend on the number of ranks, so 1 and N ranks train on the same global batches, and a run
resumes from a global sample count even with another world size (edm2's convention).
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset, Sampler, default_collate, get_worker_info  # noqa: E402

from hpc_seaice.data.h5files import open_h5
from hpc_seaice.data.manifest import Manifest, in_split, manifest_path, read_manifest, to_iso
from hpc_seaice.data.shards import check_shard_layout, shard_times
from hpc_seaice.data.static import Static, read_static, static_path
from hpc_seaice.errors import UserError  # noqa: E402

# Shards kept open per process; beyond this the least recently used is closed (file handles are
# a limited resource on shared file systems, and a pass touches shards in order anyway).
MAX_OPEN_SHARDS = 64
# Bytes of samples normalised in one go: well inside a last-level cache.
CACHE_BYTES = 8 << 20


class _OpenShard:
    """One shard opened for reading in one process.

    A sample is one uncompressed chunk, i.e. a contiguous run of little-endian float32 bytes in
    the file. Their offsets are looked up once in the HDF5 chunk index, the HDF5 file is closed
    again, and a sample is then one ``preadv`` on a plain descriptor straight into the caller's
    buffer: no HDF5 call, no chunk cache, no copy, and no HDF5 handle held open (so nothing
    clashes with other code opening the same file with other HDF5 locking flags). Files with
    filters, another dtype or other chunking keep an h5py handle and use ``read_direct``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.file: h5py.File | None = open_h5(path)
        self.fields = self.file["fields"]
        self.offsets = self._chunk_offsets()
        if self.offsets is not None:
            self.fd = os.open(path, os.O_RDONLY)
            self.file.close()
            self.file = None

    def _chunk_offsets(self) -> np.ndarray | None:
        d = self.fields
        n = d.shape[0]
        nbytes = int(np.prod(d.shape[1:])) * 4
        plain = (
            hasattr(os, "preadv")
            and sys.byteorder == "little"  # raw chunk bytes are little-endian float32
            and d.dtype == np.dtype("<f4")
            and d.chunks == (1, *d.shape[1:])
            and d.id.get_create_plist().get_nfilters() == 0
            and d.file.userblock_size == 0
        )
        if not plain or n == 0:
            return None
        offsets = np.full(n, -1, np.int64)

        def visit(info: Any) -> None:
            if info.size == nbytes and info.filter_mask == 0 and info.byte_offset is not None:
                offsets[info.chunk_offset[0]] = info.byte_offset

        try:
            d.id.chunk_iter(visit)
        except (AttributeError, RuntimeError, OSError):  # older HDF5/h5py: no chunk iteration
            return None
        return offsets if (offsets >= 0).all() else None

    def read(self, j: int, out: np.ndarray) -> None:
        try:
            if self.fd is not None and out.flags.c_contiguous:
                view = memoryview(out).cast("B")
                if os.preadv(self.fd, [view], int(self.offsets[j])) != view.nbytes:
                    raise OSError("short read: file ends inside the sample")
            elif self.file is not None:
                self.fields.read_direct(out, source_sel=np.s_[j])
            else:
                with open_h5(self.path) as f:
                    f["fields"].read_direct(out, source_sel=np.s_[j])
        except (OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{self.path}: cannot read sample {j}, truncated or corrupt ({reason})") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.file is not None:
            self.file.close()
            self.file = None


class ShardedDataset(Dataset):
    """Samples of one split as normalised, masked tensors [C, H, W] (land = 0).

    ``split`` is a name from the manifest (``train``, ``validation``, ``test``) or ``None`` for
    every sample. Samples are ordered by time (``.times``). With ``normalize=False`` items are
    physical values (land 0 as stored) and no statistics are needed.

    With a DataLoader, batches are fetched whole (``__getitems__``); pass ``collate_fn=collate``
    to receive them without the default collate's extra copy.
    """

    def __init__(self, path: str | os.PathLike, split: str | None = "train", normalize: bool = True) -> None:
        self.path = Path(path)
        self.root = manifest_path(self.path).parent
        self.split = split
        self.normalize = normalize
        self.manifest: Manifest = read_manifest(self.path)
        self.static: Static = read_static(self.root)
        grid = tuple(self.manifest.grid)
        if self.static.mask.shape != grid:
            raise UserError(f"{static_path(self.root)}: mask shape {self.static.mask.shape} != grid {grid}")
        if normalize:
            if self.static.mean is None or self.static.std is None:
                raise UserError(
                    f"{static_path(self.root)}: missing normalisation statistics; run hpc-seaice data stats {self.root}"
                )
            if self.static.mean.shape != (self.manifest.num_channels,):
                raise UserError(
                    f"{static_path(self.root)}: statistics for {self.static.mean.shape[0]} variables, "
                    f"manifest lists {self.manifest.num_channels}"
                )
        if split is not None and split not in self.manifest.splits:
            raise UserError(
                f"{manifest_path(self.path)}: no split named {split!r} (have {', '.join(self.manifest.splits)})"
            )
        self._shard_files = [str(self.root / s.file) for s in self.manifest.shards]
        shard_idx, local_idx, times = [], [], []
        for k, info in enumerate(self.manifest.shards):
            # Opened and closed again here: only the time index survives __init__.
            with open_h5(self._shard_files[k]) as f:
                check_shard_layout(f, info, self.manifest, self._shard_files[k])
                t = shard_times(f)
            keep = np.ones(len(t), bool) if split is None else in_split(t, self.manifest.splits[split])
            sel = np.nonzero(keep)[0]
            shard_idx.append(np.full(sel.size, k, np.int32))
            local_idx.append(sel.astype(np.int64))
            times.append(t[sel])
        t_all = np.concatenate(times) if times else np.zeros(0, "datetime64[s]")
        order = np.argsort(t_all, kind="stable")
        self.times: np.ndarray = t_all[order]
        self._shard = np.concatenate(shard_idx)[order] if shard_idx else np.zeros(0, np.int32)
        self._local = np.concatenate(local_idx)[order] if local_idx else np.zeros(0, np.int64)
        if len(self.times) == 0:
            what = "the data set" if split is None else f"split {split} ({'..'.join(self.manifest.splits[split])})"
            raise UserError(
                f"{manifest_path(self.path)}: {what} has no samples; data cover "
                f"{self.manifest.time_start}..{self.manifest.time_end}"
            )
        self.num_channels: int = self.manifest.num_channels
        self.grid: tuple[int, int] = (int(grid[0]), int(grid[1]))
        self.mask: torch.Tensor = torch.from_numpy(self.static.mask.astype(np.float32))
        self._ocean = self.static.mask > 0.5
        self._init_process_state()

    # -- per-process state (never pickled, rebuilt after fork or spawn) -----------------------
    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._handles: OrderedDict[int, _OpenShard] = OrderedDict()
        self._scale: np.ndarray | None = None
        self._offset: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_handles", "_scale", "_offset", "_pid"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_process_state()

    def close(self) -> None:
        """Close this process's open shards (they reopen on the next read)."""
        if getattr(self, "_pid", None) == os.getpid():
            for shard in self._handles.values():
                shard.close()
        self._handles = OrderedDict()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _shard_handle(self, k: int) -> _OpenShard:
        if self._pid != os.getpid():  # forked: inherited handles belong to the parent
            self._init_process_state()
        shard = self._handles.get(k)
        if shard is None:
            shard = _OpenShard(self._shard_files[k])
            self._handles[k] = shard
            if len(self._handles) > MAX_OPEN_SHARDS:
                _, old = self._handles.popitem(last=False)
                old.close()
        else:
            self._handles.move_to_end(k)
        return shard

    def _read(self, i: int, out: np.ndarray) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        k, j = int(self._shard[i]), int(self._local[i])
        self._shard_handle(k).read(j, out)
        return out

    def _normalizers(self) -> tuple[np.ndarray, np.ndarray]:
        if self._scale is None or self._offset is None:
            assert self.static.mean is not None and self.static.std is not None
            mask = self.static.mask.astype(np.float64)
            inv = 1.0 / self.static.std
            self._scale = (inv[:, None, None] * mask).astype(np.float32)
            self._offset = ((self.static.mean * inv)[:, None, None] * mask).astype(np.float32)
        return self._scale, self._offset

    def _nan_error(self, i: int, x: np.ndarray) -> UserError:
        k, j = int(self._shard[i]), int(self._local[i])
        where = f"{self._shard_files[k]}: sample {j} at {to_iso(self.times[i])}"
        for c, name in enumerate(self.manifest.variables):
            if not np.isfinite(x[c][self._ocean]).all():
                return UserError(f"{where}: NaN or infinite values in ocean cells of {name}")
        return UserError(f"{where}: non-finite values on land cells (land must be 0)")

    # -- public ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.times)

    def raw(self, i: int) -> np.ndarray:
        """Physical values [C, H, W] float32 of sample ``i`` (no normalisation; land 0)."""
        return self._read(i, np.empty((self.num_channels, *self.grid), np.float32))

    def _finish(self, items: list[int], x: np.ndarray) -> None:
        """Normalise samples ``x`` [n, C, H, W] (indices ``items``) in place; reject non-finite data."""
        if self.normalize:
            scale, offset = self._normalizers()
            # (x - mean) / std * mask as x * (mask / std) - mask * mean / std; land stays exactly 0.
            np.multiply(x, scale, out=x)
            np.subtract(x, offset, out=x)
        # One dot product catches NaN/inf anywhere (NaN * 0 is still NaN), so garbage never
        # trains; it is the cheapest full reduction numpy offers (BLAS).
        flat = x.reshape(-1)
        if not np.isfinite(np.dot(flat, flat)):
            for k, i in enumerate(items):
                row = x[k].reshape(-1)
                if not np.isfinite(np.dot(row, row)):
                    raise self._nan_error(i, self.raw(i))

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.raw(i)
        self._finish([i], x[None])
        return torch.from_numpy(x)

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """A batch as views [C, H, W] of one buffer [B, C, H, W] (the DataLoader's batched fetch).

        Samples are read straight into the batch buffer, in shared memory inside a DataLoader
        worker, which is where batches travel to the main process. torch's default collate
        stacks the views into a new batch (correct, one more copy); ``collate_fn=collate``
        hands over the buffer itself.
        """
        shape = (len(indices), self.num_channels, *self.grid)
        out = _new_batch(shape)
        x = out.numpy()
        items = [int(i) for i in indices]
        for i in items:
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for {len(self)} samples")
        # Normalise groups of samples that fit in cache right after reading them: one numpy call
        # per group instead of per sample (small grids), no second trip to memory (large ones).
        group = max(1, CACHE_BYTES // x[0].nbytes)
        for lo in range(0, len(items), group):
            hi = min(len(items), lo + group)
            for k in range(lo, hi):
                i = items[k]
                self._shard_handle(int(self._shard[i])).read(int(self._local[i]), x[k])
            self._finish(items[lo:hi], x[lo:hi])
        return list(out.unbind(0))

    def logvar(self, i: int) -> np.ndarray:
        """Latent data sets: the posterior log-variance [C, H, W] stored beside the mean."""
        if self.manifest.kind != "latent":
            raise ValueError("logvar exists only in latent data sets")
        k, j = int(self._shard[i]), int(self._local[i])
        with open_h5(self._shard_files[k]) as f:
            return f["logvar"][j]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised [..., C, H, W] -> physical values, land 0."""
        assert self.static.mean is not None and self.static.std is not None
        mean = torch.as_tensor(self.static.mean, dtype=x.dtype)[:, None, None]
        std = torch.as_tensor(self.static.std, dtype=x.dtype)[:, None, None]
        return (x * std + mean) * self.mask.to(x.dtype)


def _new_batch(shape: tuple[int, ...]) -> torch.Tensor:
    """Uninitialised float32 batch: in shared memory inside DataLoader workers, else numpy memory.

    Batches leave a worker through shared memory; allocating them there directly (as torch's
    default collate does for its output) saves a copy of every batch. In the main process the
    buffer comes from numpy, which asks for transparent huge pages on large arrays: first-touch
    page faults are then ~500x fewer, a 2-3x faster read of a 512 x 512 batch than into
    ``torch.empty`` memory (measured in benchmarks/dataloader.py's environment).
    """
    if get_worker_info() is not None:
        numel = int(np.prod(shape))
        storage = torch.empty(0, dtype=torch.float32)._typed_storage()._new_shared(numel)
        return torch.empty(0, dtype=torch.float32).new(storage).resize_(*shape)
    return torch.from_numpy(np.empty(shape, np.float32))


def collate(batch: Any) -> Any:
    """DataLoader ``collate_fn`` for :class:`ShardedDataset`: batches pass through uncopied.

    When ``batch`` is the list of views that :meth:`ShardedDataset.__getitems__` returns, the
    buffer they view is the batch already; anything else goes to torch's default collate.
    """
    if isinstance(batch, list) and batch and all(isinstance(t, torch.Tensor) for t in batch):
        base = batch[0]._base
        if (
            base is not None
            and base.dim() == batch[0].dim() + 1
            and base.shape[0] == len(batch)
            and base.is_contiguous()
            and all(
                t._base is base and t.data_ptr() == base.data_ptr() + k * base.stride(0) * base.element_size()
                for k, t in enumerate(batch)
            )
        ):
            return base
    return default_collate(batch)


class GlobalBatchSampler(Sampler[int]):
    """Infinite per-rank sampler over one global stream of shuffled epochs.

    Stream position p maps to epoch ``p // num_samples`` and to ``perm_e[p % num_samples]`` with
    ``perm_e = numpy.random.default_rng((seed, e)).permutation(num_samples)``. Global step s
    covers positions [s*B, (s+1)*B); rank r yields the contiguous slice
    [s*B + r*B/W, s*B + (r+1)*B/W). Remainder policy: nothing is dropped or repeated; when B does
    not divide the epoch, a global batch spans the end of one epoch and the start of the next, so
    every sample appears exactly once per epoch. Iteration starts at ``start_sample`` (a global
    sample count, the resume position; a multiple of B when resuming at a step boundary).
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
        """Global stream positions of this rank's samples at global step ``step``."""
        lo = step * self.global_batch + self.rank * self.local_batch
        return np.arange(lo, lo + self.local_batch, dtype=np.int64)

    def global_positions(self, step: int) -> np.ndarray:
        """All B positions of global step ``step`` (every rank's slice, in rank order)."""
        return np.arange(step * self.global_batch, (step + 1) * self.global_batch, dtype=np.int64)

    def epoch_of(self, position: int) -> int:
        return int(position) // self.num_samples

    def __iter__(self) -> Iterator[int]:
        base = self.start_sample + self.rank * self.local_batch
        while True:
            for idx in self.indices(np.arange(base, base + self.local_batch, dtype=np.int64)):
                yield int(idx)
            base += self.global_batch


def partition(n: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous share of ``range(n)``; the first ``n % world_size`` get one more.

    For finite passes (encoding, sampling, evaluation): the shares cover ``range(n)`` exactly once.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    base, extra = divmod(int(n), int(world_size))
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))
