"""Reading samples of one shard with as few system calls as the layout allows.

A sample is one uncompressed chunk, i.e. a contiguous run of little-endian float32 bytes in the
file. Their offsets are looked up once in the HDF5 chunk index, the HDF5 file is closed again,
and samples are then read with ``preadv`` on a plain descriptor straight into the caller's
buffers. Samples that lie back to back in the file (a sequential pass, or neighbours that meet
in a shuffled batch) are read with one ``preadv`` of several buffers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from hpc_seaice.data.format.h5files import check_self_contained, open_h5
from hpc_seaice.errors import UserError

# preadv takes at most IOV_MAX (1024 on Linux) buffers per call.
MAX_IOV = 1024


class OpenShard:
    """One array of one shard (``fields``, or a latent shard's ``logvar``) opened for reading in one process.

    A sample is one uncompressed chunk, i.e. a contiguous run of little-endian float32 bytes in
    the file. Their offsets are looked up once in the HDF5 chunk index, the HDF5 file is closed
    again, and a sample is then one ``preadv`` on a plain descriptor straight into the caller's
    buffer: no HDF5 call, no chunk cache, no copy, and no HDF5 handle held open (so nothing
    clashes with other code opening the same file with other HDF5 locking flags). Files with
    filters, another dtype or other chunking keep an h5py handle and use ``read_direct``.
    """

    def __init__(self, path: str, name: str = "fields") -> None:
        self.path = path
        self.name = name
        self.fd: int | None = None
        self.file: h5py.File | None = open_h5(path)
        try:
            check_self_contained(self.file, path)  # the offsets below must be of this file's own bytes
        except UserError:
            self.file.close()
            raise
        self.data = self.file[name]
        self.offsets = self._chunk_offsets()
        if self.offsets is not None:
            self.fd = os.open(path, os.O_RDONLY)
            self.file.close()
            self.file = None

    def _chunk_offsets(self) -> np.ndarray | None:
        d = self.data
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
        if self.fd is not None and out.flags.c_contiguous:
            self.read_many([j], [out])  # one preadv
            return
        try:
            if self.file is not None:
                self.data.read_direct(out, source_sel=np.s_[j])
            else:
                with open_h5(self.path) as f:
                    f[self.name].read_direct(out, source_sel=np.s_[j])
        except (OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            what = f"{self.path}: cannot read {self.name} of sample {j}, truncated or corrupt ({reason})"
            raise UserError(what) from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.file is not None:
            self.file.close()
            self.file = None

    def read_many(self, local: Sequence[int], outs: Sequence[np.ndarray]) -> None:
        """Samples ``local`` into ``outs`` (one C-contiguous array each); runs of neighbours in one call."""
        if self.fd is None or self.offsets is None or not all(o.flags.c_contiguous for o in outs):
            for j, out in zip(local, outs):
                self.read(j, out)
            return
        order = sorted(range(len(local)), key=lambda k: self.offsets[local[k]])
        start = 0
        while start < len(order):
            end = start + 1
            nbytes = outs[order[start]].nbytes
            while (
                end < len(order)
                and end - start < MAX_IOV
                and self.offsets[local[order[end]]] == self.offsets[local[order[end - 1]]] + nbytes
            ):
                end += 1
            views = [memoryview(outs[k]).cast("B") for k in order[start:end]]
            first = local[order[start]]
            try:
                if os.preadv(self.fd, views, int(self.offsets[first])) != nbytes * len(views):
                    raise OSError("short read: file ends inside the sample")
            except OSError as exc:
                what = f"{self.path}: cannot read {self.name} of sample {first}, truncated or corrupt ({exc})"
                raise UserError(what) from None
            start = end
