"""A lock file that refuses a second writer in one line naming the holder.

Used for the run lock of training (:mod:`hpc_seaice.runtime.runlock`) and for every output a data
command writes (:mod:`hpc_seaice.outputs`). The lock file is created with ``O_CREAT | O_EXCL``
(atomic on local file systems and on NFSv3+/Lustre/GPFS, where ``flock`` may be missing or local to
one client; ``O_NOFOLLOW``: a planted link is never followed) and says who holds it: host, pid, the
process's start time (so a reused pid is not mistaken for the holder), the SLURM job id and
torchrun's run id. It is removed when its holder ends, however it ends short of SIGKILL. A lock
left behind by a process that died is stale and taken over when the holder can be checked: on the
same host (the pid is gone, or belongs to a newer process), or when the new process is a restart
of the same job (the same SLURM job id after a requeue, or the same torchrun run id after an
elastic restart). A lock of a process on another host of another job cannot be checked from here:
the second start is refused with one line naming the holder and the file to remove if that
process is gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from hpc_seaice.errors import UserError

_TORN_GRACE_S = 5.0  # a lock file still empty after this long was torn by a crash while written


def _process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), '' when unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return text.rsplit(")", 1)[-1].split()[19]  # field 22 of stat, counted after the command name


def _identity() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": _process_start(os.getpid()),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        "torchelastic_run_id": os.environ.get("TORCHELASTIC_RUN_ID", ""),
        "time": time.time(),
    }


def _alive_here(holder: dict[str, Any]) -> bool:
    pid = int(holder.get("pid", 0) or 0)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    start = str(holder.get("start", ""))
    return not start or _process_start(pid) in ("", start)


def holder_state(holder: dict[str, Any]) -> str:
    """'alive', 'dead' or 'unknown' (another host, not a restart of our job)."""
    me = _identity()
    if holder.get("host") == me["host"]:
        return "alive" if _alive_here(holder) else "dead"
    if me["slurm_job_id"] and holder.get("slurm_job_id") == me["slurm_job_id"]:
        return "dead"  # the same job requeued or restarted: its earlier incarnation is gone
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
    if restarted and me["torchelastic_run_id"] and holder.get("torchelastic_run_id") == me["torchelastic_run_id"]:
        return "dead"
    return "unknown"


def describe(holder: dict[str, Any]) -> str:
    job = holder.get("slurm_job_id") or "none"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("time", 0) or 0)))
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, SLURM job {job}, since {since}"


class FileLock:
    """A lock file at ``path``; :meth:`acquire` once, :meth:`release` at the end.

    ``busy`` is the message's subject when a live holder refuses the lock ("another training runs
    in this run folder"); ``where`` names what is locked (the run folder, the ``--out`` path).
    """

    def __init__(self, path: str | os.PathLike, where: str, busy: str) -> None:
        self.path = Path(path)
        self.where = where
        self.busy = busy
        self.held = False

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        pid, stamp = data.get("pid"), data.get("time", 0)
        well_formed = (
            isinstance(pid, int)
            and 0 < pid < 2**31
            and isinstance(data.get("host", ""), str)
            and isinstance(stamp, (int, float))
            and 0 <= stamp < 1e11
        )
        return data if well_formed else None  # a damaged record is treated like a torn one

    def _remove_stale(self, seen: str) -> None:
        """Remove the lock file only if it still holds ``seen`` (another starter may have replaced it)."""
        aside = self.path.with_name(f"{self.path.name}.stale-{socket.gethostname()}-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = aside.read_text()
        except OSError:
            moved = seen
        if moved != seen:  # we moved a fresh lock of someone else: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def acquire(self) -> None:
        """Take the lock or raise a one-line UserError naming the holder."""
        payload = json.dumps(_identity())
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                if self.path.is_dir() or self.path.is_symlink():
                    raise UserError(f"{self.path}: not a lock file (a folder or link); remove it") from None
                holder = self._read()
                if holder == {}:
                    continue  # removed meanwhile
                try:
                    seen = self.path.read_text()
                    age = time.time() - self.path.stat().st_mtime
                except FileNotFoundError:
                    continue
                if holder is None or not holder:
                    if age < _TORN_GRACE_S:
                        time.sleep(min(max(_TORN_GRACE_S - age, 0.1), 1.0))  # being written right now?
                        continue
                    self._remove_stale(seen)
                    continue
                state = holder_state(holder)
                if state == "dead":
                    self._remove_stale(seen)
                    continue
                hint = (
                    "wait for it to finish or stop it"
                    if state == "alive"
                    else f"if that process is gone, remove {self.path}"
                )
                raise UserError(f"{self.where}: {self.busy} ({describe(holder)}); {hint}") from None
            except OSError as exc:
                raise UserError(f"{self.where}: cannot create the lock file {self.path} ({exc.strerror})") from None
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            self.held = True
            return
        raise UserError(f"{self.path}: could not take the lock (it keeps changing); is another start racing?")

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if not self.held:
            return
        self.held = False
        holder = self._read()
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
