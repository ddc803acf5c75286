"""A checkpoint's ``meta.json`` signed with a key of the user, kept outside every run folder.

Why: ``meta.json`` lists the sha256 of every file of a checkpoint, and DeepSpeed loads its own
files with pickle. Hashes alone catch damage, but whoever can write the run folder can replace a
file *and* rewrite its hash. An HMAC-SHA256 of the metadata under a key that lives in the user's
home (``~/.config/hpc-seaice/key``, or ``$HPC_SEAICE_KEY_FILE``), never in a run folder, makes a
rewritten table detectable: the run folder alone does not hold what it takes to sign it.

The key is 32 random bytes, created on first use with mode 0600 (written under a temporary name,
then linked into place, so two processes that start at once end up with one key). A key file
that other users can read or write is refused: it would sign nothing.

A checkpoint whose metadata is unsigned (written before signing existed) or signed with another
key (a run copied from another machine or user) is refused in one line; setting
``HPC_SEAICE_ACCEPT_UNSIGNED=1`` accepts such checkpoints (an environment variable, not a config
key, because a config stored in the run folder is exactly what an intruder could edit).
A metadata signed with this user's key whose signature does not match was changed after it was
written, and is always refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from hpc_seaice.errors import UserError

KEY_ENV = "HPC_SEAICE_KEY_FILE"
ACCEPT_ENV = "HPC_SEAICE_ACCEPT_UNSIGNED"
SIGNATURE = "signature"
ALGORITHM = "hmac-sha256"
KEY_BYTES = 32


def key_path() -> Path:
    """Where this user's signing key lives: ``$HPC_SEAICE_KEY_FILE`` or the user's config folder."""
    override = os.environ.get(KEY_ENV)
    if override:
        return Path(override).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "hpc-seaice" / "key"


def _create_key(path: Path) -> None:
    """Write a new random key with mode 0600; a key another process created first is kept."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.write(fd, secrets.token_hex(KEY_BYTES).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a key that exists: the first one made wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise UserError(
            f"{path}: cannot create the key that signs checkpoints ({exc.strerror or exc}); "
            f"set {KEY_ENV} to a file in a private, writable folder"
        ) from None


def load_key(create: bool = True) -> bytes:
    """This user's signing key (created on first use when ``create``); one line when it is unusable."""
    path = key_path()
    if not path.exists() and not path.is_symlink():
        if not create:
            raise UserError(f"{path}: no key to check checkpoint signatures with (set {KEY_ENV})")
        _create_key(path)
    try:
        info = path.stat()
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the checkpoint signing key ({exc})") from None
    if info.st_mode & 0o077 or not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: the checkpoint signing key must be a file only you can read: chmod 600 {path}")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise UserError(f"{path}: the checkpoint signing key belongs to another user (uid {info.st_uid})")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise UserError(f"{path}: not a checkpoint signing key (expected at least 32 hex digits)")
    return key


def key_id(key: bytes) -> str:
    """A short public name of a key (a hash of it), so a foreign key can be told from tampering."""
    return hashlib.sha256(b"hpc-seaice key id\0" + key).hexdigest()[:16]


def _payload(meta: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in meta.items() if k != SIGNATURE}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def sign(meta: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """``meta`` with a ``signature`` entry: the HMAC-SHA256 of everything else in it."""
    key = load_key() if key is None else key
    meta = json.loads(json.dumps(meta))  # signed as it will read back (tuples as lists, keys as strings)
    mac = hmac.new(key, _payload(meta), hashlib.sha256).hexdigest()
    return {**meta, SIGNATURE: {"algorithm": ALGORITHM, "key_id": key_id(key), "mac": mac}}


def accepting_unsigned() -> bool:
    return os.environ.get(ACCEPT_ENV, "").strip().lower() in ("1", "true", "yes")


def check_signature(meta: dict[str, Any], where: Path) -> bool:
    """Refuse a ``meta.json`` (read from ``where``) that this user's key did not sign as it is now.

    True when this user's key signed it; False when it is unsigned or foreign and accepted by
    ``HPC_SEAICE_ACCEPT_UNSIGNED=1``.
    """
    signature = meta.get(SIGNATURE)
    override = f"if you trust it, run with {ACCEPT_ENV}=1"
    if not isinstance(signature, dict):
        if accepting_unsigned():
            return False
        raise UserError(
            f"{where}: unsigned checkpoint metadata (written before signing, or its signature removed); {override}"
        )
    key = load_key()
    if signature.get("key_id") != key_id(key) or signature.get("algorithm") != ALGORITHM:
        if accepting_unsigned():
            return False
        raise UserError(
            f"{where}: signed with another key (a run copied from another machine or user?); use that "
            f"key ({KEY_ENV}=FILE) or, {override}"
        )
    expected = hmac.new(key, _payload(meta), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(str(signature.get("mac", "")), expected):
        raise UserError(f"{where}: changed since it was written (signature mismatch); the checkpoint is not trusted")
    return True
