"""Opening HDF5 files the way every reader and writer of this project does, and hashing them.

``HDF5_USE_FILE_LOCKING=FALSE`` is set by the package itself (``hpc_seaice/__init__.py``) before
h5py loads: Lustre/GPFS/NFS often lack POSIX locks.
"""

from __future__ import annotations

import os
from typing import Any

import h5py

from hpc_seaice.errors import UserError
from hpc_seaice.fileio import GuardedFile, write_error

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


def check_self_contained(group: h5py.Group, where: str) -> None:
    """Refuse an HDF5 file whose data live elsewhere: external or soft links, virtual datasets,
    datasets with external raw storage.

    Why: a shard is hashed as one file and the fast reader reads its samples at byte offsets of
    that file. A link or a virtual dataset would make h5py read another file's bytes (which no
    hash covers) while the reader reads the shard's own, so ``data verify`` and training would
    see different data. This project never writes any of them.
    """
    for name in group:
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
            raise UserError(
                f"{where}: '{group.name.rstrip('/')}/{name}' is {kind}; a data set file must hold its own data"
            )
        item = group[name]
        if isinstance(item, h5py.Group):
            check_self_contained(item, where)
        elif isinstance(item, h5py.Dataset):
            if item.is_virtual:
                raise UserError(f"{where}: '{item.name}' is a virtual dataset; a data set file must hold its own data")
            if item.external:
                raise UserError(
                    f"{where}: '{item.name}' stores its data in external files; a data set file must hold its own data"
                )


class H5Create:
    """A new HDF5 file at ``path`` (never an existing one, never through a link), opened to write.

    ``with H5Create(path) as f: ...`` writes through :class:`~hpc_seaice.fileio.GuardedFile`: a full
    disk or another I/O error becomes one UserError naming the file (``name`` if given: the name
    the user knows, not the temporary one), raised only after HDF5 has closed the file cleanly.
    Written directly, HDF5 2.0 crashes the process with a segmentation fault after a failed flush
    (see GuardedFile). :meth:`check` raises the error early (a long writer calls it between
    blocks). The file is fsynced when it closes.
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None) -> None:
        self.path = path
        self.shown = name or str(path)
        self.raw: GuardedFile | None = None
        self.file: h5py.File | None = None

    def __enter__(self) -> h5py.File:
        try:
            self.raw = GuardedFile(self.path)
        except OSError as exc:
            raise UserError(write_error(self.shown, exc)) from None
        try:
            self.file = h5py.File(self.raw, "w")
        except BaseException:
            self.raw.close()
            raise
        return self.file

    def check(self) -> None:
        """Raise the one-line error of a write that failed so far."""
        if self.raw is not None and self.raw.error is not None:
            raise UserError(write_error(self.shown, self.raw.error))

    def close(self) -> None:
        """Close the HDF5 file and the OS file; then raise a write error, if any."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.raw is not None and not self.raw.closed:
            self.raw.sync()
            self.raw.close()
        self.check()

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except UserError:
            pass  # the exception on its way out says more (or the same)
