"""The one training loop: autoencoder, data-space diffusion and latent diffusion.

Read top to bottom: set up (process group, data, task, engine, resume), then per step: fetch the
rank's micro-batches, one engine step over them, gather the batch statistics, EMA, log, and at
step boundaries agree on stopping, validate and checkpoint.

Exactness: the data order is a global stream (``GlobalBatchSampler``), loss noise is seeded per
sample from its stream position, and the global RNG (dropout) is reseeded each step from
(seed, rank, step). So N ranks follow the 1-rank trajectory up to float reduction order (with
dropout off; dropout masks depend on the rank), and a resumed run continues the uninterrupted one
(bitwise on one process).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from hpc_seaice.command import EXIT_INTERRUPTED, EXIT_NONFINITE, EXIT_OK, say
from hpc_seaice.config import ExperimentConfig, dump_config, with_absolute_paths
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.loading.batch_loader import BatchLoader
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.data.loading.sampler import GlobalBatchSampler, partition
from hpc_seaice.diffusion.ema import EMA
from hpc_seaice.diffusion.noise import mix_seed
from hpc_seaice.errors import PeerLost, UserError
from hpc_seaice.runtime import distributed as hdist
from hpc_seaice.runtime.checkpoint import all_finite, latest_checkpoint, save_checkpoint
from hpc_seaice.runtime.startup import notice, prepare_run, restore, resume_keys
from hpc_seaice.runtime.stopping import StopRequest, ignore_stop_signals
from hpc_seaice.train.engines import build_engine, lr_at
from hpc_seaice.train.failures import describe_collective_failure, record_job
from hpc_seaice.train.monitor import build_monitor, peak_memory_mb
from hpc_seaice.train.tasks import build_task, trains_on_posterior
from hpc_seaice.train.validation import validation_images

VALIDATION_STEP = -1  # a fixed noise/log-SNR draw, so validation losses are comparable over time
# Test hook, not a setting: the loss of these steps (0-based, comma-separated) is made NaN, to test
# how non-finite steps are skipped and stop a run. Read once per training.
FAULT_NAN_STEPS = "HPC_SEAICE_FAULT_NAN_STEPS"


def fault_nan_steps() -> frozenset[int]:
    """The steps named by ``HPC_SEAICE_FAULT_NAN_STEPS`` (empty when unset)."""
    text = os.environ.get(FAULT_NAN_STEPS, "")
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"environment variable {FAULT_NAN_STEPS}={text!r}: expected step numbers like 3,4") from None


def batch_geometry(cfg: ExperimentConfig, world: int) -> int:
    """Validate global batch = micro x accumulation x world size; return the micro-batch size."""
    train = cfg.train
    if train.batch_size <= 0 or train.grad_accum <= 0:
        raise UserError("config keys 'train.batch_size' and 'train.grad_accum' must be positive")
    per_step = world * train.grad_accum
    micro = train.micro_batch_size or train.batch_size // per_step
    if micro <= 0 or micro * per_step != train.batch_size:
        raise UserError(
            f"config key 'train.batch_size' is {train.batch_size}, which is not micro_batch_size "
            f"({micro or train.micro_batch_size}) x grad_accum ({train.grad_accum}) x world size ({world})"
        )
    return micro


def _open_datasets(cfg: ExperimentConfig) -> tuple[Any, Any]:
    posterior = trains_on_posterior(cfg, read_manifest(cfg.data.path).kind)  # batches of [mean, logvar]
    train = ShardedDataset(cfg.data.path, split=cfg.data.train_split, in_memory=cfg.data.in_memory, posterior=posterior)
    try:
        val = ShardedDataset(cfg.data.path, split=cfg.data.val_split) if cfg.train.val_every > 0 else None
    except UserError:
        val = None  # no validation split: validation is skipped and the banner says so
    return train, val


def _loader(dataset: Any, sampler: Any, micro: int, cfg: ExperimentConfig, device: torch.device) -> BatchLoader:
    """Micro-batches as views of a shared ring that workers fill (no per-batch transfer cost).

    A step keeps its ``grad_accum`` micro-batches alive, and on a GPU their asynchronous copies
    may still run while the next step's first batch is fetched: ``hold`` covers both.
    """
    workers = cfg.data.num_workers
    return BatchLoader(
        dataset,
        sampler,
        micro,
        num_workers=workers,
        prefetch_factor=cfg.data.prefetch_factor,
        hold=cfg.train.grad_accum + 1,
        pin_memory=device.type == "cuda",
        worker_init_fn=ignore_stop_signals if workers > 0 else None,
    )


def _banner(cfg, env, engine, micro, params: int, start_step: int, has_val: bool, kind: str) -> str:
    hosts = sorted(set(env.hosts))
    resume = f"resuming from step {start_step}" if start_step else "fresh start"
    space = f" ({kind} space)" if cfg.stage == "diffusion" else ""
    return (
        f"hpc-seaice train | stage {cfg.stage}{space} | {env.world_size} rank(s) on {len(hosts)} "
        f"host(s) [{', '.join(hosts)}] via {env.launcher} | engine {engine.name}"
        f"{f' ZeRO-{cfg.engine.zero_stage}' if engine.name == 'deepspeed' else ''} | device "
        f"{env.device.type} | global batch {cfg.train.batch_size} = {micro} x {cfg.train.grad_accum} x "
        f"{env.world_size} | {params / 1e6:.2f} M parameters | {resume} | "
        f"{'validation on ' + cfg.data.val_split if has_val else 'no validation split'} | run {cfg.run.dir}"
    )


def run_training(cfg: ExperimentConfig) -> int:
    """Train one run to ``train.max_steps`` (resuming from ``latest``); returns an exit code."""
    cfg = with_absolute_paths(cfg)  # the run folder's config.yaml must work from any directory
    env = hdist.init_distributed(cfg.engine.timeout_s, force_process_group=cfg.engine.name == "deepspeed")
    micro = batch_geometry(cfg, env.world_size)
    start = prepare_run(cfg, env)  # run lock (rank 0), data checks, the checkpoint to resume from
    try:
        return _train(cfg, env, micro, start)
    except (PeerLost, torch.distributed.DistError) as exc:  # the message names the lost host, if we can tell
        _say_last_checkpoint(cfg)
        raise PeerLost(describe_collective_failure(exc, env, cfg.engine.timeout_s)) from exc
    except (UserError, KeyboardInterrupt):
        raise
    except Exception:
        _say_last_checkpoint(cfg)
        raise
    finally:
        start.lock.release()


def _say_last_checkpoint(cfg: ExperimentConfig) -> None:
    """Where a failed run can be resumed from (each rank: the failing one may not be rank 0)."""
    try:
        last = latest_checkpoint(cfg.run.dir)
    except UserError as exc:
        last = f"unknown ({exc})"
    say("train", f"last checkpoint: {last}", every_rank=True)


def _train(cfg: ExperimentConfig, env: Any, micro: int, start: Any) -> int:
    run_dir = Path(cfg.run.dir)
    train_set, val_set = _open_datasets(cfg)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    task = build_task(cfg, train_set.manifest, train_set.static, env.device)
    task.net.to(env.device)
    ema = EMA(task.net, cfg.optim.ema_decay)  # a full copy, made before ZeRO-3 can partition
    engine = build_engine(task.loss_module, cfg, env, micro, load_universal=start.reshard)
    start_step, start_sample, nonfinite_total = restore(start, cfg, env, task, ema, engine)
    if env.is_main:  # only now: a config that does not match the checkpoint must not replace the run's
        changes = dump_config(cfg, run_dir / "config.yaml", start_step)
        if changes:
            notice(
                f"resuming at step {start_step} with changed config (history kept in config.yaml): {'; '.join(changes)}"
            )

    sampler = GlobalBatchSampler(
        len(train_set),
        global_batch=cfg.train.batch_size,
        rank=env.rank,
        world_size=env.world_size,
        seed=cfg.train.seed,
        start_sample=start_sample,  # exact in samples, also when train.batch_size changed
    )
    loader = _loader(train_set, sampler, micro, cfg, env.device)
    batches = iter(loader)
    params = sum(p.numel() for p in ema.module.parameters())
    monitor = build_monitor(env.is_main, run_dir, start_step, cfg.train.max_steps, cfg.train.progress)
    monitor.message(_banner(cfg, env, engine, micro, params, start_step, val_set is not None, train_set.manifest.kind))
    if env.is_main:
        record_job(run_dir, env, start_step)

    stop = StopRequest(run_dir, watch_file=env.is_main)
    stop.install()
    nan_steps = fault_nan_steps()
    nonfinite_in_row = 0
    step = start_step
    code = EXIT_OK

    def checkpoint(at_step: int) -> None:
        with engine.gathered_parameters():
            if not all_finite(task.net):
                raise RuntimeError(f"refusing to checkpoint step {at_step}: the weights are not finite")
            model_state = {"model": task.net.state_dict(), "ema": ema.state_dict()}
        trainer_state = {
            "step": at_step,
            "samples_seen": start_sample + (at_step - start_step) * cfg.train.batch_size,
            "batch_size": cfg.train.batch_size,
            "stage": cfg.stage,
            "task": task.state_dict(),
            "nonfinite_total": nonfinite_total,
            "world_size": env.world_size,
            "rng_cpu": torch.get_rng_state(),
        }
        meta = {"stage": cfg.stage, "engine": engine.name, "world_size": env.world_size, "config": resume_keys(cfg)}
        save_checkpoint(run_dir, at_step, engine, model_state, trainer_state, meta, cfg.run.keep_checkpoints)

    try:
        window_start, window_samples, window_data = time.perf_counter(), 0, 0.0
        while step < cfg.train.max_steps:
            step_start = time.perf_counter()
            micro_batches = [next(batches) for _ in range(cfg.train.grad_accum)]
            data_wait = time.perf_counter() - step_start
            torch.manual_seed(mix_seed(cfg.train.seed, env.rank, step))  # dropout etc.: exact resume
            stats: list[dict[str, torch.Tensor]] = []

            def compute_loss(module, i: int, _step: int = step, _micro=micro_batches, _stats=stats):
                x = _micro[i].to(env.device, non_blocking=True)
                mine = sampler.positions(_step - start_step)[i * micro : (i + 1) * micro]
                positions = torch.from_numpy(mine)
                loss, sample_stats = task.micro_loss(module, x, positions, _step, cfg.train.batch_size)
                if _step in nan_steps:
                    loss = loss * float("nan")  # the test hook FAULT_NAN_STEPS: a non-finite step
                _stats.append(sample_stats)
                return loss

            lr = lr_at(step, cfg.optim, cfg.train.max_steps)
            engine.set_lr(lr)
            result = engine.train_step(compute_loss, cfg.train.grad_accum)
            gathered = {key: hdist.all_gather_cat(torch.cat([s[key] for s in stats])) for key in stats[0]}
            step += 1
            if result.skipped:
                nonfinite_in_row += 1
                nonfinite_total += 1
                monitor.message(
                    f"step {step}: non-finite loss or gradients (loss {result.loss}, grad norm "
                    f"{result.grad_norm}); update skipped ({nonfinite_in_row} in a row)"
                )
                if nonfinite_in_row >= cfg.train.max_nonfinite_steps:
                    monitor.message(
                        f"stopping: {nonfinite_in_row} non-finite steps in a row (train.max_nonfinite_steps); "
                        f"no checkpoint written for them, the last good one is kept in {run_dir / 'checkpoints'}"
                    )
                    code = EXIT_NONFINITE
                    break
                task_logs: dict[str, float] = {}
            else:
                nonfinite_in_row = 0
                task_logs = task.after_step(gathered)
                with engine.gathered_parameters():
                    ema.update(task.net)

            if env.device.type == "cuda":
                torch.cuda.synchronize(env.device)
            step_time = time.perf_counter() - step_start
            window_samples += cfg.train.batch_size
            window_data += data_wait
            validate = val_set is not None and cfg.train.val_every and step % cfg.train.val_every == 0
            # One metrics.jsonl record per logged step; a validation step is always logged, with
            # val_loss in the same record.
            if validate or step % cfg.train.log_every == 0 or step == cfg.train.max_steps:
                elapsed = time.perf_counter() - window_start
                val_logs = _validate(cfg, env, task, ema, val_set, micro, step, monitor) if validate else {}
                monitor.scalars(
                    step,
                    {
                        "loss": result.loss,
                        "lr": lr,
                        "grad_norm": result.grad_norm,
                        "samples_per_s": window_samples / elapsed,
                        "step_time_s": step_time,
                        "data_wait_s": data_wait,
                        "data_wait_fraction": window_data / elapsed,
                        "memory_mb": peak_memory_mb(env.device),
                        "nonfinite_steps": nonfinite_total,
                        **task_logs,
                        **val_logs,
                    },
                )
                window_start, window_samples, window_data = time.perf_counter(), 0, 0.0
            monitor.progress(step, f"loss {result.loss:.4g}")

            stopping = hdist.all_reduce_max(stop.requested, env.device)
            if stopping or step % cfg.train.checkpoint_every == 0 or step == cfg.train.max_steps:
                checkpoint(step)
            if stopping:
                stop.clear_stop_file()
            if stopping and step < cfg.train.max_steps:
                monitor.message(
                    f"{stop.description}: checkpoint at step {step} written; re-run the same command to resume"
                )
                code = EXIT_INTERRUPTED
                break
        if code == EXIT_OK:
            monitor.message(f"finished {step} steps; checkpoints in {run_dir / 'checkpoints'}")
    finally:
        stop.restore()
        monitor.close()
        batches.close()  # a generator: ends the iterator over the workers
        loader.close()
    return code


def _validate(cfg, env, task, ema, val_set, micro, step, monitor) -> dict[str, float]:
    """EMA-model loss on a fixed slice of the validation split (returned), and a few images (rank 0)."""
    count = min(len(val_set), cfg.train.val_batches * micro * env.world_size)
    mine = list(partition(count, env.rank, env.world_size))
    total = torch.zeros(2, device=env.device)
    module = task.make_loss_module(ema.module)
    with torch.no_grad():
        for start in range(0, len(mine), micro):
            index = mine[start : start + micro]
            x = torch.stack([val_set[i] for i in index]).to(env.device)
            positions = torch.as_tensor(index, dtype=torch.int64)
            loss, _ = task.micro_loss(module, x, positions, VALIDATION_STEP, max(count, 1))
            count_here = torch.tensor(float(len(index)), device=env.device)
            total += torch.stack([loss.detach().float() * len(index), count_here])
    if hdist.is_initialized():
        torch.distributed.all_reduce(total)
    if env.is_main and (cfg.train.image_every == 0 or step % cfg.train.image_every == 0):
        monitor.images(step, validation_images(cfg, task, ema.module, val_set, env.device))
    return {"val_loss": float(total[0] / total[1])} if total[1] > 0 else {}


__all__ = ["fault_nan_steps", "run_training"]
