"""Small file helpers shared by every layer: atomic writes, content hashes, write errors.

Atomic file writes: write under a temporary name beside the target, fsync, rename.

A reader (or a crash) then sees either the old file or the complete new one, never half a file
under the real name. The temporary name starts with a dot and carries the process id, so two
processes never write the same temporary file and listings of data sets can skip them.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_name(path: str | os.PathLike) -> Path:
    """A temporary sibling of ``path`` for this process to write before renaming: the pid (so a
    listing can tell whose it is) and a random part (so nobody can plant a link under it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_target(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
    return path


_HASH_BLOCK = 8 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def write_error(path: str | os.PathLike, exc: OSError) -> str:
    """One line for a failed write of ``path``: the reason, and what to do for the usual two."""
    reason = exc.strerror or str(exc).splitlines()[0] or type(exc).__name__
    hint = {
        errno.ENOSPC: "; free some space or write elsewhere",
        errno.EDQUOT: "; the disk quota is used up",
        errno.EROFS: "; the file system is read-only",
        errno.EACCES: "; no permission to write there",
    }.get(exc.errno or 0, "")
    return f"{path}: cannot write ({reason}){hint}"


class GuardedFile(io.RawIOBase):
    """A file opened for HDF5 through h5py's file-object driver that records write errors
    instead of handing them to HDF5.

    Why: HDF5 (2.0 with h5py 3.16, measured here) frees a dataset's internal state when closing it
    fails half-way (its chunk or metadata flush hits a full disk), but keeps its identifier; the
    next flush of the file (at ``close``, or at interpreter exit) walks that identifier and the
    process dies with a segmentation fault after hundreds of lines of "Can't decrement id ref
    count". Through this object HDF5 never sees a failed write: the first error is kept in
    :attr:`error`, later writes are dropped, HDF5 finishes and closes cleanly, and the caller
    (:func:`hpc_seaice.data.format.h5files.h5_create`) raises one line naming the file. The file's
    content is then garbage; it is always a temporary that is removed.

    Created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: never an existing file, never through a link.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        self.pos = 0
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: os.fstat(self.fd).st_size}[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = os.pread(self.fd, len(buffer), self.pos)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += os.pwrite(self.fd, view[done:], self.pos + done)
            except OSError as exc:
                self.error = exc
        self.pos += len(view)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as exc:
                self.error = exc
        return size

    def flush(self) -> None:
        pass

    def sync(self) -> None:
        """fsync, recorded like a write error (some file systems report a full disk only here)."""
        if self.error is None:
            try:
                os.fsync(self.fd)
            except OSError as exc:
                self.error = exc

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()
