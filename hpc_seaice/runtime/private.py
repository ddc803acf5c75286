"""A run folder that other users can write is refused before a run starts.

Why: a run folder holds files that are executed in effect: DeepSpeed's partition files and
submitit's job pickles are loaded with pickle, and ``submit --wait`` reads result pickles from
the run's ``slurm/`` folder. Whoever can write there can run code as the user who trains, so the
project's checks (hashes, signatures, locks) protect against accidents and stale files only if
nobody else can write the folder. A folder or file writable by its group counts as writable by
other users unless the group is the user's private group (a group of the user's own name with no
other members, the usual ``umask 002`` set-up). Owned by another user counts too. The folders
above the run folder are not checked (see docs/threat_model.md).

``run.allow_shared_dir=true`` starts anyway (a group that trusts its members).
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import stat
from pathlib import Path

from hpc_seaice.errors import UserError

OVERRIDE = "run.allow_shared_dir=true"
MAX_ENTRIES = 100_000  # a run folder holds checkpoints and logs; do not walk a mistaken run.dir=/ for ever


@functools.lru_cache(maxsize=64)
def _private_group(gid: int, uid: int) -> bool:
    """Whether group ``gid`` is ``uid``'s own private group (same name, no other member)."""
    try:
        group = grp.getgrgid(gid)
        user = pwd.getpwuid(uid)
    except KeyError:
        return False
    if group.gr_name != user.pw_name or any(member != user.pw_name for member in group.gr_mem):
        return False
    return all(entry.pw_gid != gid or entry.pw_uid == uid for entry in pwd.getpwall())


def foreign_writer(path: Path, info: os.stat_result, uid: int) -> str:
    """Why another user can write ``path`` ("" when nobody else can)."""
    if info.st_uid != uid:
        return f"owned by uid {info.st_uid}"
    if info.st_mode & stat.S_IWOTH:
        return "writable by every user"
    if info.st_mode & stat.S_IWGRP and not _private_group(info.st_gid, uid):
        try:
            name = grp.getgrgid(info.st_gid).gr_name
        except KeyError:
            name = str(info.st_gid)
        return f"writable by group {name}"
    return ""


def check_private(run_dir: Path, allow_shared: bool = False) -> None:
    """Refuse ``run_dir`` when it, or anything in it, can be written by another user (one line)."""
    if allow_shared or not hasattr(os, "geteuid"):
        return
    uid = os.geteuid()
    seen = 0
    for top, _, files in os.walk(Path(run_dir).resolve()):
        for path in [Path(top), *(Path(top) / name for name in files)]:
            try:
                info = path.lstat()
            except OSError:
                continue  # removed meanwhile
            if stat.S_ISLNK(info.st_mode):
                continue  # a link's own mode means nothing; os.walk does not follow it
            why = foreign_writer(path, info, uid)
            if why:
                raise UserError(
                    f"{path}: {why}, so others could change what this run loads (pickled DeepSpeed and "
                    f"submitit files); chmod go-w it, or set {OVERRIDE} if you trust them"
                )
        seen += len(files) + 1
        if seen > MAX_ENTRIES:
            return
