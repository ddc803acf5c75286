"""Opening HDF5 files the way every reader and writer of this project does, and hashing them.

``HDF5_USE_FILE_LOCKING=FALSE`` is set by the package itself (``hpc_seaice/__init__.py``) before
h5py loads: Lustre/GPFS/NFS often lack POSIX locks.
"""

from __future__ import annotations

import os
from typing import Any

import h5py

from hpc_seaice.errors import UserError

_HASH_BLOCK = 8 << 20


def h5_file(path: str | os.PathLike, mode: str = "r", **kwargs: Any) -> h5py.File:  # Any: h5py.File's own keywords
    """``h5py.File`` without POSIX file locks (Lustre/GPFS/NFS often lack them).

    HDF5 refuses to open a file twice in one process with different locking flags. This project
    opens files with ``locking=False`` (the contract's HDF5_USE_FILE_LOCKING=FALSE, which the
    Makefile and launch scripts also export, making it h5py's default too); only if that clashes
    with a handle someone else opened with locks is the process default used instead.
    """
    try:
        return h5py.File(path, mode, locking=False, **kwargs)
    except OSError as exc:
        if "lock" not in str(exc).lower():
            raise
        return h5py.File(path, mode, **kwargs)


def open_h5(path: str | os.PathLike, mode: str = "r", **kwargs: Any) -> h5py.File:  # Any: h5py.File's own keywords
    """Open an HDF5 file for reading; a missing, truncated or corrupt file is a one-line UserError."""
    try:
        return h5_file(path, mode, **kwargs)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read HDF5 file, truncated or corrupt ({reason})") from None
