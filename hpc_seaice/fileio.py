"""Small file helpers shared by every layer: atomic writes and content hashes.

Atomic file writes: write under a temporary name beside the target, fsync, rename.

A reader (or a crash) then sees either the old file or the complete new one, never half a file
under the real name. The temporary name starts with a dot and carries the process id, so two
processes never write the same temporary file and listings of data sets can skip them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_name(path: str | os.PathLike) -> Path:
    """The temporary sibling of ``path`` that this process writes before renaming."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


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
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


_HASH_BLOCK = 8 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()
