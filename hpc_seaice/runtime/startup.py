"""Everything a training checks before its first step, so that nothing is lost or silently wrong.

Rank 0 decides, every rank learns the outcome (:func:`~hpc_seaice.runtime.distributed.decided_by_main`):

1. the run folder is a folder and writable, checkpoints included (found now, not after training),
   nobody else can write it (:mod:`hpc_seaice.runtime.private`), and the key that signs
   checkpoints can be read or made (:mod:`hpc_seaice.runtime.signing`);
2. the run lock is taken (:mod:`hpc_seaice.runtime.runlock`): a second training of the same folder
   is refused before it touches anything;
3. the data set passes the cheap checks of ``data verify`` (layout, variables, statistics, at
   least one ocean cell, bounds on a few samples of a few shards; hashes with ``data.verify_hashes``);
4. the checkpoint to resume from is chosen and checked (:func:`select_checkpoint`): never a fresh
   start over existing checkpoints;
5. the data set is the one the run recorded (:mod:`hpc_seaice.runtime.identity`), and the config
   keys a checkpoint cannot follow a change of are unchanged.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from hpc_seaice.config import ExperimentConfig
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.data.format.verify import verify_dataset
from hpc_seaice.diffusion.ema import EMA
from hpc_seaice.errors import PeerLost, UserError
from hpc_seaice.runtime import distributed as hdist
from hpc_seaice.runtime.checkpoint import (
    CHECKPOINTS,
    LATEST,
    STEP_NAME,
    EngineFiles,
    check_resumable,
    check_usable,
    complete_checkpoints,
    earlier_usable,
    fallback_hint,
    find_checkpoint,
    load_module_state,
    load_states,
    read_pointer,
)
from hpc_seaice.runtime.distributed import DistEnv
from hpc_seaice.runtime.identity import compare_identity, data_identity, read_identity, record_identity
from hpc_seaice.runtime.integrity import read_meta
from hpc_seaice.runtime.private import check_private
from hpc_seaice.runtime.runlock import RunLock
from hpc_seaice.runtime.signing import load_key

QUICK_SHARDS = 3  # shards whose first samples are read at start
QUICK_SAMPLES = 4


class RestorableTask(Protocol):
    """What restoring needs of a training task (:class:`hpc_seaice.train.tasks.Task`, a layer above):
    its network and the state it keeps beside it (e.g. the adaptive noise schedule)."""

    net: nn.Module

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class RunStart:
    lock: RunLock
    folder: Path | None  # the checkpoint to resume from, None for a fresh run
    reshard: bool  # a ZeRO checkpoint of another world size: load its universal form


def resume_keys(cfg: ExperimentConfig) -> dict[str, Any]:
    """Config values a checkpoint cannot follow a change of; recorded in its meta.json.

    ``train.seed`` and ``data.train_split`` decide which samples come next: another value on resume
    would repeat some samples and skip others of the epoch under way.
    """
    keys = {"stage": cfg.stage, "engine.name": cfg.engine.name, "engine.zero_stage": cfg.engine.zero_stage}
    keys |= {"train.seed": cfg.train.seed, "data.train_split": cfg.data.train_split}
    if cfg.stage in ("diffusion", "refiner"):
        keys |= {"diffusion.schedule": cfg.diffusion.schedule, "diffusion.adaptive_bins": cfg.diffusion.adaptive_bins}
        if cfg.stage == "refiner":  # its pairs come from that run's VAE
            keys |= {"refine.latent_run": str(cfg.refine.latent_run)}
    else:
        keys |= {"vae.decoder": cfg.vae.decoder}
    return keys


def notice(text: str) -> None:
    print(f"hpc-seaice train: warning: {text}", file=sys.stderr, flush=True)


def _check_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"config key 'run.dir': {run_dir} exists and is not a folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"config key 'run.dir': cannot create {run_dir} ({exc.strerror})") from None


def _check_writable(root: Path) -> None:
    """Checkpoints are written and pruned here: find a read-only folder now, not after training."""
    try:
        if root.exists() and not root.is_dir():
            raise UserError(f"{root}: exists and is not a folder; the run keeps its checkpoints there")
        root.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"{root}: not writable ({exc.strerror}); the run could not save checkpoints") from None


def _check_data(cfg: Any) -> dict[str, Any]:
    if not cfg.data.path:
        raise UserError("config key 'data.path' is empty: set data.path=DIR")
    if not Path(cfg.data.path).is_dir():
        raise UserError(f"config key 'data.path': no such data set folder: {cfg.data.path}")
    hashes = cfg.data.verify_hashes
    verify_dataset(
        cfg.data.path,
        progress=False,
        hashes=hashes,
        max_shards=None if hashes else QUICK_SHARDS,
        samples_per_shard=QUICK_SAMPLES,
    )
    return data_identity(read_manifest(cfg.data.path), read_static(cfg.data.path))


def select_checkpoint(run_dir: Path, fallback: str) -> Path | None:
    """The checkpoint to resume from (rank 0): ``latest``, else a recovered or fall-back one, else None.

    None only when the run folder holds no checkpoint at all: a start over existing checkpoints
    is never a fresh start.
    """
    root = run_dir / CHECKPOINTS
    steps = sorted(p.name for p in root.glob("step_*") if p.is_dir() and STEP_NAME.fullmatch(p.name))
    failed, problem = "~", ""
    try:
        name = read_pointer(root)
    except UserError as exc:
        name, problem = None, str(exc)
    if name is None and not problem:
        if not steps:
            return None
        complete = complete_checkpoints(run_dir)
        if not complete:
            raise UserError(
                f"{root}: holds {', '.join(steps)} but no complete checkpoint and no {LATEST}; refusing to "
                f"start afresh over them (move them away to start a new run)"
            )
        failed = complete[-1].name
        try:
            check_usable(complete[-1])
            notice(f"{root / LATEST} is missing; resuming from the newest complete checkpoint {failed}")
            return complete[-1]
        except UserError as exc:
            problem = f"{root / LATEST} is missing and the newest checkpoint is unusable: {exc}"
    elif name is not None:
        failed = name
        try:
            check_usable(root / name)
            return root / name
        except UserError as exc:
            problem = f"{root / LATEST} names {name}: {exc}"
    if not fallback:
        raise UserError(problem + fallback_hint(run_dir, failed))
    if fallback == "auto":
        earlier = earlier_usable(run_dir, failed)
        if earlier is None:
            raise UserError(
                problem + "; run.fallback_checkpoint=auto: no earlier complete checkpoint passes its checks"
            )
    else:
        try:
            earlier = find_checkpoint(run_dir, fallback)
        except UserError as exc:
            raise UserError(f"{problem}; config key 'run.fallback_checkpoint': {exc}") from None
        check_usable(earlier)
    notice(f"{problem}; falling back to {earlier.name} (run.fallback_checkpoint={fallback})")
    return earlier


def _check_resume_keys(folder: Path, cfg: Any) -> None:
    recorded = read_meta(folder).get("config", {})
    for key, value in resume_keys(cfg).items():
        if key in recorded and recorded[key] != value:
            raise UserError(
                f"config key '{key}' is {value!r}, but checkpoint {folder} was written with {recorded[key]!r}; "
                f"set {key}={recorded[key]} to resume, or use a new run.dir"
            )


def prepare_run(cfg: ExperimentConfig, env: DistEnv) -> RunStart:
    """Rank 0's start-up checks (module docstring), agreed by every rank; the lock is held by rank 0."""
    run_dir = Path(cfg.run.dir)
    lock = RunLock(run_dir)

    def decide() -> tuple[str | None, bool]:
        _check_run_dir(run_dir)
        check_private(run_dir, cfg.run.allow_shared_dir)
        load_key()  # made or found now: a checkpoint that cannot be signed is found before training
        lock.acquire()
        try:
            _check_writable(run_dir / CHECKPOINTS)
            identity = _check_data(cfg)
            folder = select_checkpoint(run_dir, cfg.run.fallback_checkpoint)
            if folder is None:
                record_identity(run_dir, identity)
                return None, False
            recorded = read_identity(run_dir)
            if recorded is not None:
                compare_identity(recorded, identity, run_dir, cfg.data.path)
            _check_resume_keys(folder, cfg)
            if read_meta(folder).get("stage", cfg.stage) != cfg.stage:
                raise UserError(
                    f"{folder}: checkpoint of stage {read_meta(folder).get('stage')}, config says {cfg.stage}"
                )
            return folder.name, check_resumable(folder, cfg.engine.name, env.world_size)
        except BaseException:
            lock.release()
            raise

    try:
        name, reshard = hdist.decided_by_main(decide)  # type: ignore[misc]
    except BaseException:
        lock.release()
        raise
    folder = None if name is None else run_dir / CHECKPOINTS / name
    return RunStart(lock=lock, folder=folder, reshard=reshard)


def restore(
    start: RunStart, cfg: ExperimentConfig, env: DistEnv, task: RestorableTask, ema: EMA, engine: EngineFiles
) -> tuple[int, int, int]:
    """Load the chosen checkpoint into the task, EMA and engine; (step, samples seen, non-finite total).

    Damage that the hashes cannot catch (old checkpoints, a checkpoint of another model) is one line
    naming the file, with the earlier checkpoint that can be used instead.
    """
    folder = start.folder
    if folder is None:
        return 0, 0, 0
    try:
        model_state, trainer_state = load_states(folder, env.device)
        load_module_state(ema.module, model_state["ema"]["module"], str(folder))
        if engine.name == "ddp":
            load_module_state(task.net, model_state["model"], str(folder))
        try:
            engine.load(folder)
            ema.load_state_dict(model_state["ema"])
            task.load_state_dict(trainer_state["task"])
        except (UserError, PeerLost):
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged or mismatched engine/optimizer state
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{folder}: cannot resume from it ({type(exc).__name__}: {text[:200]})") from None
    except UserError as exc:
        hdist.all_reduce_max(1, env.device)  # the other ranks must not go on without this one
        hint = fallback_hint(Path(cfg.run.dir), folder.name) if env.is_main else ""
        raise UserError(f"{exc}{hint}") from None
    if hdist.all_reduce_max(0, env.device):
        raise UserError(
            f"{folder}: another rank could not load its part of this checkpoint (damaged DeepSpeed partition file?)"
        )
    step = int(trainer_state["step"])
    samples = int(trainer_state.get("samples_seen", step * cfg.train.batch_size))
    saved_batch = int(trainer_state.get("batch_size", cfg.train.batch_size))
    if saved_batch != cfg.train.batch_size and env.is_main:
        notice(
            f"train.batch_size is {cfg.train.batch_size}, the checkpoint was written with {saved_batch}; "
            f"training continues at sample {samples} of the data stream, nothing skipped or repeated"
        )
    return step, samples, int(trainer_state.get("nonfinite_total", 0))
