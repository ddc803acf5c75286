"""Reading a sharded data set for training: the Dataset (and, re-exported, the sampler and partitions).

The reader keeps no HDF5 handle from ``__init__``: each process (the main one or a DataLoader
worker, forked or spawned) opens the shards it touches on first use, and a fork is detected by
its pid, so HDF5 state is never shared between processes. A sample is one uncompressed chunk;
a batch is read with one ``preadv`` per run of neighbouring samples straight into the output
buffer (``hpc_seaice.data.format.shard_reader``) and normalised in place, a cache-sized group at a time.

The global batch sampler and the partitions of finite passes live in
:mod:`hpc_seaice.data.loading.sampler` and are importable from here as before; the loader that hands
whole batches across the worker boundary is :mod:`hpc_seaice.data.loading.batch_loader`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from hpc_seaice.data.blocks import iter_blocks
from hpc_seaice.data.format.h5files import open_h5
from hpc_seaice.data.format.manifest import Manifest, in_split, manifest_path, read_manifest, to_iso
from hpc_seaice.data.format.shard_reader import OpenShard
from hpc_seaice.data.format.shards import check_shard_layout, shard_times
from hpc_seaice.data.format.static import Static, read_static, static_path
from hpc_seaice.data.loading.sampler import GlobalBatchSampler, partition  # noqa: F401  (imported from here too)
from hpc_seaice.errors import UserError

# Shards kept open per process; beyond this the least recently used is closed (file handles are
# a limited resource on shared file systems, and a pass touches shards in order anyway).
MAX_OPEN_SHARDS = 64
# Bytes of samples normalised in one go: well inside a last-level cache.
CACHE_BYTES = 8 << 20
LOG_FLOAT32_MAX = float(np.log(np.finfo(np.float32).max))


class ShardedDataset(Dataset):
    """Samples of one split as normalised, masked tensors [C, H, W] (land = 0).

    ``split`` is a name from the manifest (``train``, ``validation``, ``test``) or ``None`` for
    every sample. Samples are ordered by time (``.times``). With ``normalize=False`` items are
    physical values (land 0 as stored) and no statistics are needed.

    With a DataLoader, batches are fetched whole (``__getitems__``); pass ``collate_fn=collate``
    to receive them without the default collate's extra copy. :class:`~hpc_seaice.data.loading.batch_loader.BatchLoader`
    goes further: workers fill batches in a shared ring and hand over only their batch numbers.
    ``in_memory=True`` reads the split once into shared memory (see :meth:`load_into_memory`).

    ``posterior=True`` (latent data sets, normalised): each sample is [2C, h, w], the standardised
    posterior mean followed by the posterior log-variance ``logvar`` as stored beside it. The
    latent trainer draws z = mu + sigma * eps with sigma = exp(logvar / 2) / latent std, on its
    own device; reading logvar here puts it in the same batch buffers and DataLoader workers as
    the means, not in a second read per step in the training process, and leaves the loader
    nothing to compute but the normalisation of the means.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str | None = "train",
        normalize: bool = True,
        in_memory: bool = False,
        posterior: bool = False,
    ) -> None:
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
        if posterior and (self.manifest.kind != "latent" or not normalize):
            raise ValueError(f"{self.root}: posterior samples need a latent data set, normalised")
        self.posterior = posterior
        self.num_channels: int = self.manifest.num_channels
        self.sample_channels: int = self.num_channels * (2 if posterior else 1)  # channels of one item
        self.grid: tuple[int, int] = (int(grid[0]), int(grid[1]))
        self.mask: torch.Tensor = torch.from_numpy(self.static.mask.astype(np.float32))
        self._ocean = self.static.mask > 0.5
        self._memory: torch.Tensor | None = None
        self._init_process_state()
        if in_memory:
            self.load_into_memory()

    # -- per-process state (never pickled, rebuilt after fork or spawn) -----------------------
    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._handles: OrderedDict[tuple[str, int], OpenShard] = OrderedDict()
        self._scale: torch.Tensor | None = None
        self._offset: torch.Tensor | None = None

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

    def _shard_handle(self, k: int, name: str = "fields") -> OpenShard:
        if self._pid != os.getpid():  # forked: inherited handles belong to the parent
            self._init_process_state()
        key = (name, k)
        shard = self._handles.get(key)
        if shard is None:
            shard = OpenShard(self._shard_files[k], name)
            self._handles[key] = shard
            if len(self._handles) > MAX_OPEN_SHARDS:
                _, old = self._handles.popitem(last=False)
                old.close()
        else:
            self._handles.move_to_end(key)
        return shard

    def _read_by_shard(self, items: Sequence[int], out: np.ndarray, name: str = "fields") -> None:
        """Raw samples ``items`` of data set ``name`` into ``out``: shard by shard, neighbours in one call."""
        by_shard: dict[int, list[int]] = {}
        for k, i in enumerate(items):
            by_shard.setdefault(int(self._shard[i]), []).append(k)
        for shard, ks in by_shard.items():
            local = [int(self._local[items[k]]) for k in ks]
            self._shard_handle(shard, name).read_many(local, [out[k] for k in ks])

    def _checked(self, indices: Sequence[int]) -> list[int]:
        """``indices`` as ints, each within [-len, len) (negative ones count from the end)."""
        items = [int(i) for i in indices]
        for i in items:
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for {len(self)} samples")
        return items

    def _read(self, i: int, out: np.ndarray) -> np.ndarray:
        (i,) = self._checked([i])
        k, j = int(self._shard[i]), int(self._local[i])
        self._shard_handle(k).read(j, out)
        return out

    def _check_sigma(self, items: list[int], logvar: np.ndarray) -> None:
        """Refuse a log-variance whose sigma = exp(logvar / 2) / std would overflow float32 (one pass)."""
        assert self.static.std is not None
        with np.errstate(invalid="ignore"):  # NaN is reported by the finite check
            top = 0.5 * logvar.max(axis=(2, 3)) - np.log(self.static.std)  # [n, C]: log of the largest sigma
        bad = np.isfinite(top) & (top > LOG_FLOAT32_MAX)  # NaN and inf: named by the finite check
        if bad.any():
            k = int(np.argmax(bad.any(axis=1)))
            s, j = int(self._shard[items[k]]), int(self._local[items[k]])
            raise UserError(
                f"{self._shard_files[s]}: sample {j} at {to_iso(self.times[items[k]])}: posterior log-variance "
                f"(logvar) up to {logvar[k].max():g}: sigma = exp(logvar / 2) overflows float32"
            )

    def _normalizers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask / std, -mask * mean / std) per channel and cell: x * first + second normalises."""
        if self._scale is None or self._offset is None:
            assert self.static.mean is not None and self.static.std is not None
            mask = self.static.mask.astype(np.float64)
            inv = 1.0 / self.static.std
            self._scale = torch.from_numpy((inv[:, None, None] * mask).astype(np.float32))
            self._offset = torch.from_numpy((-(self.static.mean * inv)[:, None, None] * mask).astype(np.float32))
        return self._scale, self._offset

    def _nan_error(self, i: int, x: np.ndarray) -> UserError:
        k, j = int(self._shard[i]), int(self._local[i])
        where = f"{self._shard_files[k]}: sample {j} at {to_iso(self.times[i])}"
        if self.posterior and not np.isfinite(self.logvar(i)).all():
            return UserError(f"{where}: NaN or infinite values in the posterior log-variance (logvar)")
        for c, name in enumerate(self.manifest.variables):
            if not np.isfinite(x[c][self._ocean]).all():
                return UserError(f"{where}: NaN or infinite values in ocean cells of {name}")
        return UserError(f"{where}: non-finite values on land cells (land must be 0)")

    # -- public ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.times)

    def raw(self, i: int) -> np.ndarray:
        """Physical values [C, H, W] float32 of sample ``i`` (no normalisation; land 0)."""
        return self._read(i, np.empty((self.num_channels, *self.grid), np.float32))  # the means only

    def _finish(self, items: list[int], x: np.ndarray) -> None:
        """Normalise samples ``x`` [n, C or 2C, H, W] (indices ``items``) in place; reject non-finite data."""
        if self.normalize:
            scale, neg_offset = self._normalizers()
            means = torch.from_numpy(x[:, : self.num_channels])
            # (x - mean) / std * mask as x * (mask / std) - mask * mean / std in one fused pass
            # (a third less time than two numpy passes); land stays exactly 0.
            torch.addcmul(neg_offset, means, scale, out=means)
        if self.posterior:
            self._check_sigma(items, x[:, self.num_channels :])
        # One dot product catches NaN/inf anywhere (NaN * 0 is still NaN), so garbage never
        # trains; it is the cheapest full reduction numpy offers (BLAS).
        flat = x.reshape(-1)
        if not np.isfinite(np.dot(flat, flat)):
            for k, i in enumerate(items):
                row = x[k].reshape(-1)
                if not np.isfinite(np.dot(row, row)):
                    raise self._nan_error(i, self.raw(i))

    def __getitem__(self, i: int) -> torch.Tensor:
        x = np.empty((1, self.sample_channels, *self.grid), np.float32)
        return torch.from_numpy(self.read_batch([i], x)[0])

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """A batch as views [C, H, W] of one buffer [B, C, H, W] (the DataLoader's batched fetch).

        Samples are read straight into the batch buffer, in shared memory inside a DataLoader
        worker, which is where batches travel to the main process. torch's default collate
        stacks the views into a new batch (correct, one more copy); ``collate_fn=collate``
        hands over the buffer itself.
        """
        out = _new_batch((len(indices), self.sample_channels, *self.grid))
        self.read_batch(indices, out.numpy())
        return list(out.unbind(0))

    def read_batch(self, indices: Sequence[int], out: np.ndarray) -> np.ndarray:
        """Samples ``indices`` into ``out`` [n, C (2C with posterior), H, W] float32: read, normalised, checked.

        Per group of samples that fits in cache: the group's samples are read shard by shard
        with as few calls as the file layout allows (neighbours in one ``preadv``), then
        normalised in one numpy call per group, not per sample, with no second trip to memory.
        An in-memory data set (``in_memory=True``) gathers the rows it already holds.
        """
        items = self._checked(indices)
        if self._memory is not None:
            np.take(self._memory.numpy(), items, axis=0, out=out)
            return out
        group = max(1, CACHE_BYTES // max(1, out[0].nbytes))
        for lo in range(0, len(items), group):
            hi = min(len(items), lo + group)
            self._read_by_shard(items[lo:hi], out[lo:hi, : self.num_channels])
            if self.posterior:
                self._read_by_shard(items[lo:hi], out[lo:hi, self.num_channels :], "logvar")
            self._finish(items[lo:hi], out[lo:hi])
        return out

    def load_into_memory(self) -> None:
        """Read the whole split once into shared memory (normalised); later reads are gathers.

        For data sets that fit (a paper-scale latent set is about 3 GB, 6 GB with ``posterior``): no file access and no
        normalisation per batch afterwards. The array is in torch shared memory, so DataLoader
        workers (forked or spawned) use it without copies; call it before starting them.
        """
        if self._memory is None:
            memory = torch.empty((len(self), self.sample_channels, *self.grid), dtype=torch.float32).share_memory_()
            for block in iter_blocks(len(self), memory[0].numel() * 4):  # about 64 MB per call
                self.read_batch(range(block.start, block.stop), memory.numpy()[block])
            self._memory = memory
            self.close()

    def logvar(self, i: int) -> np.ndarray:
        """Latent data sets: the posterior log-variance [C, H, W] stored beside the mean."""
        return self.read_logvars([i])[0]

    def read_logvars(self, indices: Sequence[int]) -> np.ndarray:
        """Latent data sets: the posterior log-variances [n, C, H, W] of samples ``indices``.

        Read like a batch of means (one descriptor per shard kept open, neighbours in one
        ``preadv``), not one HDF5 open per sample: the latent trainer reads them every step.
        """
        if self.manifest.kind != "latent":
            raise ValueError("logvar exists only in latent data sets")
        items = self._checked(indices)
        out = np.empty((len(items), self.num_channels, *self.grid), np.float32)
        self._read_by_shard(items, out, "logvar")
        return out

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

    ``Any``: whatever torch's ``default_collate`` takes and returns (nested lists, tuples, dicts of
    tensors and numbers), which this function hands on unchanged in type.

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
