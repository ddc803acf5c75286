"""A data set as an output: which files of a folder are the data set's, and the checks before the swap.

Every command that writes a data set (``data synth``, ``data convert``, ``encode``) writes it through
:func:`dataset_output` (:class:`hpc_seaice.outputs.Output`): into a temporary folder beside
``--out``, swapped in only once complete and passing the checks of ``data verify``. With
``--overwrite`` only the files the old manifest names (and the manifest and static file) are
replaced; anything else a user keeps in the folder, even a file named like a shard
(``backup-00001.h5``), is never touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from hpc_seaice.data.format.manifest import MANIFEST_NAME
from hpc_seaice.data.format.static import STATIC_NAME
from hpc_seaice.data.format.verify import verify_dataset
from hpc_seaice.errors import UserError
from hpc_seaice.outputs import Output


def dataset_files(folder: Path) -> list[str]:
    """The names of the data set in ``folder`` that the project wrote, the manifest first (empty: none).

    Read from the manifest itself, not from a pattern. A manifest that cannot be read is refused:
    which files belong to the set is then unknown, and guessing could delete a user's file.
    """
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return []
    try:
        shards = [str(s["file"]) for s in json.loads(manifest.read_text())["shards"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{manifest}: cannot be read ({type(exc).__name__}), so which files are the old data set's is "
            "unknown; remove the old data set by hand"
        ) from None
    if any(Path(name).name != name or name.startswith(".") for name in shards):
        raise UserError(f"{manifest}: names shard files outside its folder; remove the old data set by hand")
    return [MANIFEST_NAME, STATIC_NAME, *shards]


def dataset_output(
    out: str | os.PathLike,
    command: str,
    overwrite: bool,
    inputs: Sequence[tuple[str, str | os.PathLike]] = (),
) -> Output:
    """The :class:`~hpc_seaice.outputs.Output` of a data set written by ``command`` to ``out``."""
    return Output(
        out, command, folder=True, overwrite=overwrite, inputs=inputs, owned=dataset_files, last=MANIFEST_NAME
    )


def verify_new(folder: Path) -> None:
    """The checks a new data set passes before it replaces anything: layout, shapes, sample bounds."""
    verify_dataset(folder, progress=False, hashes=False, samples_per_shard=4)  # the writer hashed each shard
