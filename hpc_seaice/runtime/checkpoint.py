"""Atomic checkpoints of a run folder (loading one for inference: :mod:`hpc_seaice.inference.loading`).

Layout::

    runs/<name>/checkpoints/step_00000100/   model.pt (weights + EMA), trainer_state.pt (step,
                                            data position, noise schedule, RNG), meta.json (signed
                                            sha256 of every other file, runtime/integrity.py),
                                            and the engine's own files (optimizer.pt for DDP,
                                            DeepSpeed's partitioned state; universal/ once
                                            it was resumed on another world size)
    runs/<name>/checkpoints/latest          text: the name of the newest complete checkpoint

A checkpoint is written into ``.tmp-step_XXXXXXXX``, every file fsynced, then renamed; ``latest``
is replaced last (temp file + rename), so a crash at any moment leaves the previous checkpoint
usable. Only the newest ``keep`` checkpoints are kept. Everything we write loads with
``torch.load(weights_only=True)``: tensors, numbers, strings and containers, no pickled objects.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from hpc_seaice.errors import UserError
from hpc_seaice.fileio import atomic_write
from hpc_seaice.runtime import distributed as hdist
from hpc_seaice.runtime.integrity import UNIVERSAL, add_files, file_hashes, read_meta, verify_files, write_meta

CHECKPOINTS = "checkpoints"
LATEST = "latest"


class EngineFiles(Protocol):
    """What checkpointing needs of a training engine (:class:`hpc_seaice.train.engines.Engine`, a
    layer above this one): its name and its own files (optimizer state, DeepSpeed partitions)."""

    name: str

    def save(self, folder: Path) -> None: ...

    def load(self, folder: Path) -> None: ...


PINS = "pins"  # <checkpoint>/pins/*.txt: data sets that were made with this checkpoint


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


STEP_NAME = re.compile(r"step_\d{8}")


def read_pointer(root: Path) -> str | None:
    """The checkpoint name in ``root/latest`` (None when absent); it must name a folder of ``root``."""
    pointer = root / LATEST
    if not pointer.exists() and not pointer.is_symlink():
        return None
    if not pointer.is_file():
        raise UserError(f"{pointer}: not a text file naming the newest checkpoint (a folder or link?); remove it")
    try:
        name = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{pointer}: unreadable ({exc})") from None
    if not STEP_NAME.fullmatch(name):
        raise UserError(f"{pointer}: names {name[:80]!r}, not a checkpoint folder step_NNNNNNNN of {root}")
    return name


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint folders of a run that were completely written (renamed from their temporary), oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if STEP_NAME.fullmatch(p.name) and (p / "meta.json").is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` names, or None when there is no ``latest``."""
    root = Path(run_dir) / CHECKPOINTS
    name = read_pointer(root)
    if name is None:
        return None
    folder = root / name
    if not (folder / "model.pt").is_file():
        raise UserError(f"{root / LATEST} names {folder.name}, which is missing or incomplete")
    return folder


def find_checkpoint(run_dir: str | Path, step: str | int = "latest") -> Path:
    """A checkpoint folder by step: ``latest``, a step number (``300``) or a folder name (``step_00000300``)."""
    if str(step) == "latest":
        folder = latest_checkpoint(run_dir)
        if folder is None:
            found = "is missing" if complete_checkpoints(run_dir) else "is missing: no checkpoint yet"
            raise UserError(f"{run_dir}: {CHECKPOINTS}/{LATEST} {found}")
        return folder
    text = str(step).removeprefix("step_")
    if not text.isdigit():
        raise UserError(f"checkpoint {step!r}: expected 'latest', a step number or a step_NNNNNNNN folder name")
    folder = Path(run_dir) / CHECKPOINTS / step_name(int(text))
    if not (folder / "model.pt").is_file():
        available = sorted(p.name for p in (Path(run_dir) / CHECKPOINTS).glob("step_*") if (p / "model.pt").is_file())
        raise UserError(f"{run_dir}: no checkpoint for step {step} (available: {', '.join(available) or 'none'})")
    return folder


def all_finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    engine: EngineFiles,
    model_state: dict[str, Any],
    trainer_state: dict[str, Any],
    meta: dict[str, Any],
    keep: int,
) -> Path:
    """Write one checkpoint on every rank (collective: all ranks must call it)."""
    root = Path(run_dir) / CHECKPOINTS
    final = root / step_name(step)
    tmp = root / f".tmp-{step_name(step)}"
    main = hdist.rank() == 0
    failure = ""
    if main:
        try:
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        except OSError as exc:
            failure = f"{exc.filename or tmp}: {exc.strerror}"
    _agree(failure, final)
    try:
        engine.save(tmp)
    except (OSError, RuntimeError) as exc:
        failure = _write_failure(exc, tmp)
    _agree(failure, final)
    if main:
        try:
            torch.save(model_state, tmp / "model.pt")
            torch.save(trainer_state, tmp / "trainer_state.pt")
            files = file_hashes(tmp)  # every rank's files are written (barrier above); meta.json last
            write_meta(tmp, {**meta, "step": step, "time": time.time(), "files": files})  # signed
            _fsync_tree(tmp)
            if final.exists():
                shutil.rmtree(final)
            tmp.replace(final)
            atomic_write(root / LATEST, final.name + "\n")
            _prune(root, final, keep)
        except (OSError, RuntimeError) as exc:  # a full disk, a folder made read-only during the run, ...
            failure = _write_failure(exc, tmp)
    _agree(failure, final)
    return final


def _write_failure(exc: BaseException, tmp: Path) -> str:
    """What went wrong writing a checkpoint, with the free space there; collective failures pass on."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, RuntimeError) and any(w in text.lower() for w in ("gloo", "nccl", "collective", "timed out")):
        raise exc
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename or tmp}: {exc.strerror}"
    try:
        text += f"; {shutil.disk_usage(tmp.parent).free / 1e6:.3g} MB free there"
    except OSError:
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    return text


def _agree(failure: str, final: Path) -> None:
    """Every rank learns that rank 0 could not write the checkpoint; one line, the last one kept."""
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if hdist.all_reduce_max(int(bool(failure)), device):
        raise UserError(
            f"cannot write checkpoint {final} ({failure or 'on rank 0'}); the last complete checkpoint "
            f"({final.parent / LATEST}) is intact: free space or fix the folder, then re-run to resume"
        )


def _prune(root: Path, final: Path, keep: int) -> None:
    """Keep ``final`` (just written, named by ``latest``) and the ``keep - 1`` checkpoints before it.

    Folders of later steps are left over from a trajectory this run abandoned when it resumed
    from an earlier ``latest`` (a crash between renaming a checkpoint and updating ``latest``),
    and so are stale temporary folders: both go.
    """
    folders = sorted(p for p in root.glob("step_*") if p.is_dir() and p.name <= final.name)
    doomed = folders[: max(len(folders) - max(keep, 1), 0)]
    doomed += [p for p in root.glob("step_*") if p.is_dir() and p.name > final.name]
    doomed = [p for p in doomed if not is_pinned(p)]  # a latent data set was encoded with it
    doomed += [p for p in root.glob(".tmp-step_*") if p.is_dir()]
    for old in doomed:
        shutil.rmtree(old, ignore_errors=True)


def is_pinned(folder: Path) -> bool:
    """Whether a data set that still exists recorded that it needs this checkpoint (:func:`pin_checkpoint`)."""
    pins = folder / PINS
    if not pins.is_dir():
        return False
    for pin in pins.glob("*.txt"):
        try:
            user = pin.read_text().strip()
        except OSError:
            return True  # unreadable: keep the checkpoint to be safe
        if not user or Path(user).exists():
            return True
    return False


def pin_checkpoint(folder: Path, user: str | Path) -> Path:
    """Keep ``folder`` from pruning because ``user`` (e.g. a latent data set) depends on it."""
    key = hashlib.sha256(str(Path(user).resolve()).encode()).hexdigest()[:16]
    (folder / PINS).mkdir(exist_ok=True)
    path = folder / PINS / f"{key}.txt"
    atomic_write(path, f"{Path(user).resolve()}\n")
    return path


def check_resumable(folder: Path, engine_name: str, world_size: int) -> bool:
    """Whether the checkpoint must be resharded to resume on ``world_size`` ranks.

    One line instead of an engine's traceback when it cannot be resumed as configured. DDP state is
    the same on every rank, so any world size resumes it, as does DeepSpeed without ZeRO. ZeRO state
    is partitioned per rank: a different world size goes through :func:`universal_checkpoint`.
    """
    meta = read_meta(folder)
    if meta.get("engine") != engine_name:
        raise UserError(
            f"{folder}: written by engine.name={meta.get('engine')}, the config says engine.name={engine_name}"
        )
    partitioned = any(folder.glob("*_optim_states.pt"))  # ZeRO >= 1; stage 0 keeps one full copy
    return engine_name == "deepspeed" and partitioned and meta.get("world_size") != world_size


def universal_checkpoint(folder: Path, device: torch.device) -> Path:
    """``folder/universal``: DeepSpeed's world-size-independent form of a DeepSpeed checkpoint.

    Made once, by rank 0, with DeepSpeed's own converter (``ds_to_universal``) in a subprocess,
    into a temporary folder renamed when complete; the other ranks wait, and learn if it failed.
    Its log is kept beside it; its files are added to the checkpoint's signed hash table.
    """
    out = folder / UNIVERSAL
    log = folder / "universal.log"
    failed = 0
    if hdist.rank() == 0 and not out.is_dir():
        tmp = folder / ".universal-tmp"
        command = [
            sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal",
            "--input_folder", str(folder), "--output_folder", str(tmp),
            "--inject_missing_state", "--num_extract_workers", "1", "--num_merge_workers", "1",
        ]  # fmt: skip
        print(f"hpc-seaice: converting {folder} to a universal checkpoint (log: {log})", file=sys.stderr, flush=True)
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            with open(log, "w") as handle:
                code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
            failed = int(code != 0 or not (tmp / "zero").is_dir())
            if not failed:
                tmp.replace(out)
                add_files(folder, UNIVERSAL)  # hashed and signed like the rest: checked on the next resume
        except (OSError, UserError) as exc:  # e.g. a read-only run folder: the other ranks must still hear of it
            print(f"hpc-seaice: {folder}: {exc}", file=sys.stderr, flush=True)
            failed = 1
    if hdist.all_reduce_max(failed, device):
        raise UserError(f"{folder}: DeepSpeed could not convert it to a universal checkpoint (see {log})")
    return out


STATE_FILES = ("model.pt", "trainer_state.pt")  # what load_states reads


def load_states(folder: Path, device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_state, trainer_state) of a checkpoint folder, loaded without pickle; any damage is one line."""
    states = []
    for name, where in zip(STATE_FILES, (device, "cpu")):
        path = folder / name
        if not path.is_file():
            raise UserError(f"{folder}: incomplete checkpoint ({name} missing)")
        try:
            states.append(torch.load(path, map_location=where, weights_only=True))
        except Exception as exc:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError, ... of a damaged file
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{path}: unreadable ({type(exc).__name__}: {first[:200]})") from None
    model_state, trainer_state = states
    if not (isinstance(model_state, dict) and isinstance(model_state.get("ema"), dict)):
        raise UserError(f"{folder / 'model.pt'}: not a checkpoint of this trainer (no 'model' and 'ema' weights)")
    if "model" not in model_state or not isinstance(model_state["ema"].get("module"), dict):
        raise UserError(f"{folder / 'model.pt'}: not a checkpoint of this trainer (no 'model' and 'ema' weights)")
    if not (isinstance(trainer_state, dict) and isinstance(trainer_state.get("step"), int)):
        raise UserError(f"{folder / 'trainer_state.pt'}: not a checkpoint of this trainer (no step)")
    return model_state, trainer_state


def load_module_state(module: nn.Module, state: dict[str, Any], where: str) -> None:
    """Load weights, turning a shape or key mismatch into one line naming the checkpoint."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise UserError(f"{where}: checkpoint does not match the configured model ({first})") from None


def check_usable(folder: Path) -> None:
    """Raise a one-line UserError unless ``folder`` is a complete, unaltered checkpoint."""
    if not folder.is_dir():
        raise UserError(f"{folder}: missing")
    meta = verify_files(folder)
    if "files" not in meta:  # written before hashes were recorded: read our files once to be sure
        load_states(folder, torch.device("cpu"))
        optimizer = folder / "optimizer.pt"
        if optimizer.is_file():
            try:
                torch.load(optimizer, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any damage of the file
                raise UserError(f"{optimizer}: unreadable ({type(exc).__name__})") from None


def earlier_usable(run_dir: Path, newer_than: str = "~") -> Path | None:
    """The newest complete checkpoint before ``newer_than`` that passes the checks, if any."""
    for folder in reversed(complete_checkpoints(run_dir)):
        if folder.name < newer_than:
            try:
                check_usable(folder)
                return folder
            except UserError:
                continue
    return None


def fallback_hint(run_dir: Path, failed: str = "~") -> str:
    """Where to go from an unusable checkpoint: the newest earlier one that passes the checks."""
    earlier = earlier_usable(run_dir, failed)
    if earlier is None:
        return "; no earlier complete checkpoint passes its checks"
    return (
        f"; the earlier complete checkpoint {earlier.name} can be used: run.fallback_checkpoint={earlier.name} "
        f"(or run.fallback_checkpoint=auto to fall back automatically)"
    )
