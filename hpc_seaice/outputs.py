"""How every command writes its output: checked first, written beside it, swapped in at the end.

Every command that writes a data set or a file (``encode``, ``data synth``, ``data convert``,
``sample``, ``evaluate``) goes through :class:`Output`:

1. **check** before any work: the path (not under a file, a folder where a folder is wanted), not
   equal to, inside or around one of the command's inputs, an existing output only with
   ``--overwrite``, the place writable, and enough free space for everything the command writes
   (its temporary copies included);
2. **begin**: take the lock ``.<name>.lock`` beside the target (the run lock's rules,
   :mod:`hpc_seaice.filelock`: a second writer is refused in one line naming the holder), then
   create a new temporary folder ``.<name>.tmp-<host>-<pid>-<random>`` beside it with ``mkdir``
   (exclusive: never an existing folder, never through a link; mode 0700);
3. the command writes into that folder (:attr:`Output.staging`);
4. **commit**: check the result, then swap it in: a file by one rename; a folder's files by
   renames, the old output's files moved aside first and the new manifest last, then the old
   files removed. Only files the project wrote are touched: those the old output's manifest
   names (``owned``), never anything else a user keeps in the folder.

Any failure or kill before the swap leaves the old output as it was (the temporary folder is
removed on the way out, or by the next writer when its process is gone). A kill in the middle of
the swap's renames leaves ``.<name>.old-...`` beside the target; the next writer puts the old
output back from it before it starts. Disk full and other write errors are one line naming the
file (:func:`hpc_seaice.fileio.write_error`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hpc_seaice.errors import UserError
from hpc_seaice.fileio import write_error
from hpc_seaice.filelock import FileLock

WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EFBIG)


def _blocking_parent(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a folder, if any."""
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """An output folder (created later): not a file, not under a file."""
    out = Path(path)
    blocker = _blocking_parent(out)
    if blocker is not None:
        raise UserError(f"{option} {out}: {blocker} is a file, not a folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out}: is a file; give a folder")
    return out


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM becomes ``SystemExit(143)`` inside the block, so clean-up code runs on the way out.

    By default SIGTERM ends the process at once, which would leave a temporary folder (possibly
    gigabytes) beside the target until the next writer. Only in the main thread (where Python runs
    signal handlers); the previous handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def _resolved(path: str | os.PathLike, option: str) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise UserError(f"{option} {path}: cannot be resolved ({getattr(exc, 'strerror', None) or exc})") from None


class Output:
    """One output of one command (a folder or a file); see the module docstring for the protocol.

    ``owned(folder)`` lists the names (files or folders) of an output found in ``folder`` that the
    project wrote, read from its manifest, ``last`` first (empty: no output there); a file target
    needs none. ``inputs`` are ``(option, path)`` pairs the output may not equal, be inside of or
    contain. ``replace_own``: an existing output is replaced without ``--overwrite`` (the report
    of ``evaluate``).
    """

    def __init__(
        self,
        target: str | os.PathLike,
        command: str,
        *,
        folder: bool,
        overwrite: bool = False,
        option: str = "--out",
        inputs: Sequence[tuple[str, str | os.PathLike]] = (),
        owned: Callable[[Path], list[str]] | None = None,
        last: str = "",
        replace_own: bool = False,
    ) -> None:
        self.target = Path(target)
        self.command = command
        self.folder = folder
        self.overwrite = overwrite
        self.option = option
        self.inputs = list(inputs)
        self.owned = owned or (lambda _: [])
        self.last = last
        self.replace_own = replace_own
        self.staging: Path | None = None
        self.lock: FileLock | None = None
        self._token = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"

    # -- names ---------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"{self.option} {self.target}"

    def _parent(self) -> Path:
        return self.target.absolute().parent

    def _prefix(self, kind: str) -> str:
        return f".{self.target.name}.{kind}-"

    @property
    def path(self) -> Path:
        """Where the command writes: the temporary folder, or the file of that name inside it."""
        if self.staging is None:
            raise RuntimeError("Output.begin() first")
        return self.staging if self.folder else self.staging / self.target.name

    # -- 1. checks -----------------------------------------------------------------------------

    def check(self, needed_bytes: int = 0, what: str = "the output") -> Output:
        """Everything that can be known before the work; one-line UserErrors naming the option."""
        out = self.target
        blocker = _blocking_parent(out)
        if blocker is not None:
            raise UserError(f"{self.label}: {blocker} is a file, not a folder")
        if out.is_symlink() and not out.exists():
            raise UserError(f"{self.label}: a link to nothing (or a link loop); remove it or give another path")
        if self.folder and out.exists() and not out.is_dir():
            raise UserError(f"{self.label}: is a file; give a folder")
        if not self.folder and out.is_dir():
            raise UserError(f"{self.label}: is a folder; give a file name")
        mine = _resolved(out, self.option)
        for option, path in self.inputs:
            theirs = _resolved(path, option)
            if _inside(mine, theirs) or _inside(theirs, mine):
                relation = "is" if mine == theirs else ("is inside" if _inside(mine, theirs) else "contains")
                raise UserError(f"{self.label}: {relation} the input {option} {path}; write the output elsewhere")
        self._check_existing()
        existing = next((p for p in (out.absolute(), *out.absolute().parents) if p.exists()), None)
        if existing is not None:
            place = existing if existing.is_dir() else existing.parent
            if not os.access(place, os.W_OK | os.X_OK):
                raise UserError(f"{self.label}: {place} is not writable")
            free = shutil.disk_usage(place).free
            if needed_bytes > free:
                raise UserError(
                    f"{self.label}: {what} need about {needed_bytes / 1e9:.3g} GB (temporary copies included), "
                    f"only {free / 1e9:.3g} GB free there"
                )
        return self

    def _check_existing(self) -> None:
        out = self.target
        if self.overwrite or self.replace_own:
            return
        if self.folder and out.is_dir() and self.owned(out):
            raise UserError(f"{self.label}: already holds a {self._what()}; pass --overwrite to replace it")
        if not self.folder and out.exists():
            raise UserError(f"{self.label}: exists; pass --overwrite to replace it")

    def _what(self) -> str:
        return "data set" if self.last == "manifest.json" else "result"

    # -- 2. begin ------------------------------------------------------------------------------

    def begin(self) -> Path:
        """Take the lock, put back what a killed swap left, make the temporary folder; returns it."""
        parent = self._parent()
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.label}: cannot create its folder {parent} ({exc.strerror})") from None
        self.lock = FileLock(
            parent / f".{self.target.name}.lock", self.label, f"another hpc-seaice {self.command} writes it"
        )
        self.lock.acquire()
        try:
            self._recover(parent)
            self._check_existing()  # a writer that finished while we waited is not replaced without --overwrite
            staging = parent / f"{self._prefix('tmp')}{self._token}"
            try:
                staging.mkdir(mode=0o700)
            except OSError as exc:
                raise UserError(
                    f"{self.label}: cannot create the temporary folder {staging} beside it ({exc.strerror})"
                ) from None
        except BaseException:
            self.release()
            raise
        self.staging = staging
        return staging

    def _stale(self, parent: Path, kind: str) -> list[Path]:
        """Temporary folders of ``kind`` of writers on this host that are gone (pids of other
        hosts mean nothing here: theirs are kept)."""
        prefix = f"{self._prefix(kind)}{socket.gethostname()}-"
        found = []
        for path in parent.glob(f"{glob_escape(prefix)}*"):
            pid = path.name.removeprefix(prefix).split("-", 1)[0]
            if path.is_dir() and not path.is_symlink() and pid.isdigit() and not _pid_alive(int(pid)):
                found.append(path)
        return found

    def _recover(self, parent: Path) -> None:
        """Undo a swap that was killed half-way (its ``.old-`` folder is left), drop dead writers' folders."""
        for backup in self._stale(parent, "old"):
            token = backup.name.removeprefix(self._prefix("old"))
            staging = parent / f"{self._prefix('tmp')}{token}"
            done = self.last and (self.target / self.last).exists() and not (staging / self.last).exists()
            if not done:  # the new manifest never arrived: put the old output back
                for name in self.owned(staging) if staging.is_dir() else []:
                    moved_in = self.target / name
                    if not (backup / name).exists() and moved_in.exists():
                        _remove(moved_in)
                for entry in sorted(backup.iterdir(), key=lambda p: p.name == self.last):
                    os.replace(entry, self.target / entry.name)
            shutil.rmtree(backup, ignore_errors=True)
        for staging in self._stale(parent, "tmp"):
            shutil.rmtree(staging, ignore_errors=True)

    # -- 4. commit -----------------------------------------------------------------------------

    def commit(self, verify: Callable[[Path], None] | None = None) -> Path:
        """Check the complete output (``verify`` on the temporary folder), then swap it in."""
        if self.staging is None:
            raise RuntimeError("Output.begin() first")
        if verify is not None:
            verify(self.staging)
        if not self.folder:
            os.replace(self.staging / self.target.name, self.target)
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
            return self.target
        if not self.target.exists():
            os.chmod(self.staging, 0o777 & ~_umask())
            os.rename(self.staging, self.target)
            self.staging = None
            return self.target
        self._swap(self.staging)
        self.staging = None
        return self.target

    def _swap(self, staging: Path) -> None:
        out = self.target
        old = [name for name in self.owned(out) if (out / name).exists() or (out / name).is_symlink()]
        new = sorted((p.name for p in staging.iterdir()), key=lambda name: name == self.last)
        foreign = [name for name in new if name not in old and ((out / name).exists() or (out / name).is_symlink())]
        if foreign:
            raise UserError(
                f"{self.label}: {out / foreign[0]} is in the way and was not written by the {self._what()} "
                "being replaced; move it and run again"
            )
        backup = self._parent() / f"{self._prefix('old')}{self._token}"
        backup.mkdir(mode=0o700)
        moved_old: list[str] = []
        moved_new: list[str] = []
        try:
            for name in old:  # the old manifest first: a reader sees no data set, never a mixed one
                os.replace(out / name, backup / name)
                moved_old.append(name)
            for name in new:  # the new manifest last
                os.replace(staging / name, out / name)
                moved_new.append(name)
        except BaseException:  # a failed rename or Ctrl-C half-way: put the old output back as it was
            for name in moved_new:
                os.replace(out / name, staging / name)
            for name in moved_old:
                os.replace(backup / name, out / name)
            backup.rmdir()
            raise
        shutil.rmtree(backup, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)

    # -- the end -------------------------------------------------------------------------------

    def abort(self) -> None:
        """Remove the temporary folder (the old output is untouched)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @contextlib.contextmanager
    def writing(self, begin: bool = True) -> Iterator[Output]:
        """:meth:`begin` (unless done already); the body writes into :attr:`path` and calls
        :meth:`commit`. On any failure (SIGTERM included) the temporary folder goes, write errors
        become one line (:meth:`errors`), and the lock is released."""
        with terminate_as_exit():
            if begin:
                self.begin()
            try:
                with self.errors():
                    yield self
            finally:
                self.abort()
                self.release()

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """A failed write (full disk, quota, read-only, I/O error) inside: one line naming the file."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in WRITE_ERRORS:
                raise
            raise UserError(write_error(exc.filename or self.target, exc)) from None


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters escaped (a target named ``a[1]`` is not a pattern)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
