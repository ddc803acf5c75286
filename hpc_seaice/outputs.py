"""Checks of the output paths users give on the command line, before any work is done.

A path whose parent is a file, a file where a folder is expected (or the reverse), or an existing
output without ``--overwrite`` is one line naming the option and the path, never a traceback
after minutes of sampling.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hpc_seaice.errors import UserError


def _blocking_parent(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a folder, if any."""
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def check_output_file(path: str | os.PathLike, option: str, overwrite: bool) -> Path:
    """An output file to be (re)written: not a folder, under folders, new unless ``overwrite``."""
    out = Path(path)
    blocker = _blocking_parent(out)
    if blocker is not None:
        raise UserError(f"{option} {out}: {blocker} is a file, not a folder")
    if out.is_dir():
        raise UserError(f"{option} {out}: is a folder; give a file name")
    if out.exists() and not overwrite:
        raise UserError(f"{option} {out}: exists; pass --overwrite to replace it")
    existing = next((p for p in (out.absolute(), *out.absolute().parents) if p.exists()), None)
    if existing is not None and not os.access(existing if existing.is_dir() else existing.parent, os.W_OK):
        raise UserError(f"{option} {out}: {existing} is not writable")
    return out


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """An output folder (created later): not a file, not under a file."""
    out = Path(path)
    blocker = _blocking_parent(out)
    if blocker is not None:
        raise UserError(f"{option} {out}: {blocker} is a file, not a folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out}: is a file; give a folder")
    return out


def check_free_space(path: str | os.PathLike, needed_bytes: int, option: str, what: str) -> None:
    """Refuse an output that cannot fit on its file system (checked before generating it)."""
    existing = next(p for p in (Path(path).absolute(), *Path(path).absolute().parents) if p.exists())
    free = shutil.disk_usage(existing if existing.is_dir() else existing.parent).free
    if needed_bytes > free:
        raise UserError(
            f"{option} {path}: {what} need about {needed_bytes / 1e9:.3g} GB, only {free / 1e9:.3g} GB free there"
        )


def check_scratch_dir(path: str | os.PathLike, option: str, ours: str) -> Path:
    """A scratch folder a command empties and removes: refuse a file there, or a folder holding
    anything but ``ours`` (a glob of what the command itself leaves after a crash)."""
    scratch = Path(path)
    if scratch.is_symlink() or (scratch.exists() and not scratch.is_dir()):
        raise UserError(f"{option}: {scratch} is needed as a scratch folder but is a file or link; move it away")
    if scratch.is_dir():
        foreign = next((p for p in scratch.iterdir() if not p.match(ours)), None)
        if foreign is not None:
            raise UserError(
                f"{option}: the scratch folder {scratch} holds {foreign.name}, not written by this command; move it"
            )
    return scratch
