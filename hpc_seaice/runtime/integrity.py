"""Checkpoint integrity: the sha256 of every file of a checkpoint, recorded, signed and checked.

``meta.json`` is the last file written into a checkpoint and lists every other file with its
sha256, DeepSpeed's own partition files included; it is signed with the user's key
(:mod:`hpc_seaice.runtime.signing`), so a table rewritten to match a replaced file is refused.
Before anything is loaded, the signature and the list are checked: a missing, truncated or
altered file, or a ``.pt`` file added later, is refused in one line, before torch or DeepSpeed
(which loads its files with pickle) opens it. DeepSpeed's universal form, made later from the
checked checkpoint, is added to the signed table when it is made (:func:`add_files`); pins of
latent data sets and the conversion's log are not part of it (never loaded).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from hpc_seaice.errors import UserError
from hpc_seaice.fileio import atomic_write, sha256_file
from hpc_seaice.runtime.signing import SIGNATURE, check_signature, sign

META_NAME = "meta.json"
UNIVERSAL = "universal"  # DeepSpeed's world-size-independent form, made on a resume of another world size
NOT_HASHED = (META_NAME, UNIVERSAL, "universal.log", ".universal-tmp", "pins")


def file_hashes(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file of a checkpoint folder but its meta.json."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and relative.parts[0] not in NOT_HASHED:
            hashes[relative.as_posix()] = sha256_file(path)
    return hashes


def write_meta(folder: Path, meta: dict[str, Any], signed: bool = True) -> None:
    """Write ``meta`` as the checkpoint's ``meta.json`` (atomically), signed with the user's key."""
    meta = {k: v for k, v in meta.items() if k != SIGNATURE}
    atomic_write(folder / META_NAME, json.dumps(sign(meta) if signed else meta, indent=1))


def add_files(folder: Path, sub: str) -> None:
    """Add every file of ``folder/sub`` (made later from the checked checkpoint) to its table.

    The table is signed again only when this user's key signed it: a table accepted with
    ``HPC_SEAICE_ACCEPT_UNSIGNED=1`` stays unsigned (trust is not laundered into a signature).
    Checkpoints written before hashes were recorded have no table to add to.
    """
    meta = read_meta(folder)
    own = check_signature(meta, folder / META_NAME)
    if "files" not in meta:
        return
    for path in sorted((folder / sub).rglob("*")):
        if path.is_file():
            meta["files"][path.relative_to(folder).as_posix()] = sha256_file(path)
    write_meta(folder, meta, signed=own)


def read_meta(folder: Path) -> dict[str, Any]:
    """A checkpoint's ``meta.json``, or a one-line UserError."""
    path = folder / META_NAME
    if not path.is_file():
        raise UserError(f"{folder}: incomplete checkpoint ({META_NAME} missing)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files", {}), dict):
        raise UserError(f"{path}: not a checkpoint's metadata (expected an object with a 'files' table)")
    return meta


def verify_files(folder: Path, only: Collection[str] | None = None) -> dict[str, Any]:
    """Check every file ``meta.json`` lists against its sha256; return the metadata.

    ``only``: check just these files (inference reads the weights, not the optimizer state,
    which is twice their size); one of them on disk but not in the table is refused too.
    Checkpoints written before hashes were recorded have no ``files`` table and pass unchecked;
    like those written before signing, they need ``HPC_SEAICE_ACCEPT_UNSIGNED=1``.
    """
    meta = read_meta(folder)
    check_signature(meta, folder / META_NAME)
    for name, digest in meta.get("files", {}).items():
        if only is not None and name not in only:
            continue
        path = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise UserError(f"{folder / META_NAME}: lists {name!r}, outside the checkpoint")
        if not path.is_file():
            raise UserError(f"{path}: missing from the checkpoint")
        if sha256_file(path) != digest:
            raise UserError(f"{path}: changed or damaged since it was written (sha256 mismatch)")
    if "files" in meta:  # torch and DeepSpeed find their files by name: an added one would load unchecked
        for path in sorted(folder.rglob("*.pt")) if only is None else [folder / name for name in only]:
            relative = path.relative_to(folder)
            if path.is_file() and relative.parts[0] not in NOT_HASHED and relative.as_posix() not in meta["files"]:
                raise UserError(f"{path}: not part of the checkpoint as written (not listed in {META_NAME}); remove it")
        universal = folder / UNIVERSAL
        if only is None and universal.is_dir():
            for path in sorted(universal.rglob("*")):
                if path.is_file() and path.relative_to(folder).as_posix() not in meta["files"]:
                    raise UserError(
                        f"{path}: not part of the checkpoint (not listed in {META_NAME}); remove {universal}, "
                        f"it is made again from the checked checkpoint"
                    )
    return meta
