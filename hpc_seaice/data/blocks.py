"""Walking over arrays in pieces: blocks of bounded size, one block read safely, an even subsample.

Every scan of a data set (verify, statistics, conversion, the reader's in-memory load) goes through
these, so memory stays bounded and an unreadable block is the same one-line error everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from hpc_seaice.errors import UserError

if TYPE_CHECKING:
    import h5py


def iter_blocks(n: int, sample_bytes: int, target_bytes: int = 64 << 20) -> Iterator[slice]:
    """Slices of ``range(n)`` holding about ``target_bytes`` each (bounded memory scans)."""
    step = max(1, target_bytes // max(1, sample_bytes))
    for lo in range(0, n, step):
        yield slice(lo, min(n, lo + step))


def read_block(f: h5py.File, name: str, sl: slice, where: str) -> np.ndarray:
    """Samples ``sl`` of array ``name`` of an open shard; an unreadable block is one line naming ``where``."""
    try:
        return f[name][sl]
    except OSError as exc:
        raise UserError(f"{where}: cannot read {name}, truncated or corrupt ({exc})") from None


def evenly_spaced(num_states: int, max_states: int) -> np.ndarray:
    """Indices of all ``num_states`` states, or of ``max_states`` evenly spread over them.

    Evenly spread (not the first ones) so that a subsample still covers every season.
    """
    if max_states <= 0 or max_states >= num_states:
        return np.arange(num_states)
    return np.unique(np.linspace(0, num_states - 1, max_states).round().astype(np.int64))
