"""The identity of the data set a run trains on, recorded in the run and checked on every use.

``<run.dir>/data_identity.json`` holds what makes a data set "the same" for a trained model: its
kind, variables, grid, a hash of the land mask and the normalisation statistics. The path is
not part of it, so a data set that was moved or copied still matches. A run records it when it
starts from scratch; resuming, ``sample``, ``encode`` and ``evaluate --reconstruct`` compare the
data set now at ``data.path`` with it and refuse a different one in one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hpc_seaice.data.format.identity import data_identity, identity_difference
from hpc_seaice.data.format.manifest import Manifest, manifest_path
from hpc_seaice.data.format.static import Static
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import atomic_write

IDENTITY_NAME = "data_identity.json"
__all__ = [
    "IDENTITY_NAME",
    "check_identity",
    "compare_identity",
    "data_identity",
    "read_identity",
    "record_identity",
    "require_data_set",
]


def require_data_set(run_dir: str | os.PathLike, data: str, role: str = "") -> None:
    """The data set a run was trained on must still be where its config says; else one line naming
    the key to set and where (``role``: how the caller knows the run, e.g. `` (refine.latent_run)``)."""
    if not manifest_path(data).is_file():
        run_dir = Path(run_dir)
        raise UserError(
            f"{run_dir}{role}: the data set it was trained on, {data}, is gone (moved?); set data.path in "
            f"{run_dir / 'config.yaml'} to where it is now (checked against {run_dir / IDENTITY_NAME})"
        )


def record_identity(run_dir: str | os.PathLike, identity: dict[str, Any]) -> None:
    """Write the run's identity record (atomically)."""
    atomic_write(Path(run_dir) / IDENTITY_NAME, json.dumps(identity, indent=1))


def read_identity(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The recorded identity, or None for runs made before it was recorded."""
    path = Path(run_dir) / IDENTITY_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def compare_identity(
    recorded: dict[str, Any], found: dict[str, Any], run_dir: str | os.PathLike, data_path: str | os.PathLike
) -> None:
    """One line naming the first difference between a run's recorded data and the data found."""
    difference = identity_difference(recorded, found)
    if difference is not None:
        raise UserError(
            f"{data_path}: not the data set run {run_dir} was trained on ({difference}; "
            f"see {Path(run_dir) / IDENTITY_NAME})"
        )


def check_identity(
    run_dir: str | os.PathLike, data_path: str | os.PathLike, manifest: Manifest, static: Static
) -> None:
    """Refuse a data set that differs from the one the run recorded (no record: nothing to check)."""
    recorded = read_identity(run_dir)
    if recorded is not None:
        compare_identity(recorded, data_identity(manifest, static), run_dir, data_path)
