"""Training engines behind one small interface: PyTorch DDP and DeepSpeed.

The trainer never branches on the engine. It asks an engine for one optimizer step over a number
of micro-batches (``train_step``), and to save or load its own part of a checkpoint. Everything
engine-specific (``no_sync`` during accumulation, DeepSpeed's ``backward``/``step``, ZeRO
partitioned state) stays here.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpc_seaice.config import EngineConfig, ExperimentConfig, OptimConfig, TrainConfig
from hpc_seaice.errors import UserError
from hpc_seaice.runtime import distributed as hdist
from hpc_seaice.runtime.checkpoint import universal_checkpoint
from hpc_seaice.runtime.distributed import DistEnv


@dataclass
class StepResult:
    loss: float  # mean loss over the global batch
    grad_norm: float  # before clipping; nan/inf when not finite
    skipped: bool  # True when the update was skipped for non-finite values


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups with weight decay on weight matrices and kernels only.

    Biases, norm scales and layer-scale vectors (one value per channel, whatever their
    broadcast shape) are not decayed, following the authors' setup.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        is_matrix = param.ndim >= 2 and param.numel() != param.shape[0]
        (decay if is_matrix else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_multiplier(step: int, optim: OptimConfig, max_steps: int) -> float:
    """Linear warm-up, then cosine annealing down to ``min_lr`` at ``max_steps`` (a factor of ``optim.lr``)."""
    warmup = min(optim.warmup_steps, max(max_steps - 1, 0))
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(max_steps - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    floor = optim.min_lr / optim.lr if optim.lr > 0 else 0.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, optim: OptimConfig, max_steps: int) -> float:
    """The learning rate of the update that ``step`` steps have preceded.

    A pure function of the step: there is no scheduler state to save, resume or keep in step
    with updates an engine skips (a resumed or extended run simply asks for the rate of its step).
    """
    return optim.lr * lr_multiplier(step, optim, max_steps)


class SkippableAdamW(torch.optim.AdamW):
    """AdamW whose next ``step`` can be skipped as a whole (no moments, no decay).

    DeepSpeed calls the client optimizer's ``step`` itself at the accumulation boundary; this
    flag is how a step with a non-finite loss leaves the weights and moments untouched there.
    """

    skip_next: bool = False

    def step(self, closure: Callable | None = None) -> Any:  # type: ignore[override]
        if self.skip_next:
            self.skip_next = False
            return None
        return super().step(closure)


def build_optimizer(model: nn.Module, optim: OptimConfig) -> SkippableAdamW:
    return SkippableAdamW(decay_groups(model, optim.weight_decay), lr=optim.lr, betas=tuple(optim.betas), eps=1e-8)


def resolve_precision(engine: EngineConfig, device: torch.device) -> str:
    if engine.precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return engine.precision


class Engine:
    """The interface the trainer uses."""

    name = "base"
    model: nn.Module  # the bare network (EMA, inference weights)
    optimizer: SkippableAdamW

    def train_step(self, compute_loss: Callable[[nn.Module, int], torch.Tensor], num_micro: int) -> StepResult:
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        """Use ``lr`` for the next update (every parameter group; weight decay scales with it)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def gathered_parameters(self) -> contextlib.AbstractContextManager:
        """A context in which ``self.model``'s parameters are whole on every rank."""
        return contextlib.nullcontext()

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    def load(self, folder: Path) -> None:
        raise NotImplementedError


def _no_forward_buffer_sync() -> dict[str, bool]:
    """DDP's argument for "no buffer broadcast before every forward", spelled as this torch wants it.

    The buffers (land masks, normalisation constants) are set from the data set and equal on every
    rank, and that broadcast would be one more collective per step, outside the backward's
    lost-peer handling. torch 2.13 renamed the switch ``forward_sync_buffers`` and warns (a
    FutureWarning on every rank, which a user cannot act on) when given the old
    ``broadcast_buffers``; older torch knows only the old name. The new switch still broadcasts the
    buffers once when DDP wraps the model: rank 0's values, equal to everyone's.
    """
    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


NO_FORWARD_BUFFER_SYNC = _no_forward_buffer_sync()


class DDPEngine(Engine):
    """Plain PyTorch: DDP across ranks (none for one process), gradient accumulation with
    ``no_sync`` on all but the last micro-batch, clipping, bf16 autocast on GPU."""

    name = "ddp"

    def __init__(self, model: nn.Module, cfg: ExperimentConfig, env: DistEnv) -> None:
        self.model = model.to(env.device)
        self.device = env.device
        self.precision = resolve_precision(cfg.engine, env.device)
        self.grad_clip = cfg.optim.grad_clip
        if hdist.world_size() > 1:
            device_ids = [env.device.index] if env.device.type == "cuda" else None
            self.module: nn.Module = nn.parallel.DistributedDataParallel(
                self.model, device_ids=device_ids, **NO_FORWARD_BUFFER_SYNC
            )
        else:
            self.module = self.model
        self.optimizer = build_optimizer(self.model, cfg.optim)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, compute_loss, num_micro: int) -> StepResult:
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for i in range(num_micro):
            sync = i == num_micro - 1 or not isinstance(self.module, nn.parallel.DistributedDataParallel)
            context = contextlib.nullcontext() if sync else self.module.no_sync()
            with context:
                with self._autocast():
                    loss = compute_loss(self.module, i)
                with hdist.collective("the gradient all-reduce") if sync else contextlib.nullcontext():
                    (loss.float() / num_micro).backward()
            total += loss.detach().float()
        mean_loss = hdist.all_reduce_mean(total / num_micro)
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.grad_clip if self.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
        # Gradients are already all-reduced, so every rank reaches the same verdict.
        finite = bool(torch.isfinite(mean_loss)) and bool(torch.isfinite(grad_norm))
        if finite:
            self.optimizer.step()
        return StepResult(float(mean_loss), float(grad_norm), not finite)

    def save(self, folder: Path) -> None:
        if hdist.rank() == 0:
            torch.save({"optimizer": self.optimizer.state_dict()}, folder / "optimizer.pt")

    def load(self, folder: Path) -> None:
        path = folder / "optimizer.pt"
        if not path.is_file():
            raise UserError(f"{folder}: no optimizer.pt; was this checkpoint written by engine.name=ddp?")
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])  # a "scheduler" entry of older checkpoints is unused


def _skip_shm_build_if_asked() -> None:
    """Optionally skip DeepSpeed's shared-memory comm op JIT build (about 26 s once per machine).

    Opt-in through ``HPC_SEAICE_DS_SKIP_SHM=1`` (the test suite sets it): the op only speeds up
    intra-node CPU collectives, gloo does the work without it.
    """
    if os.environ.get("HPC_SEAICE_DS_SKIP_SHM") == "1":
        # By module name: the attribute deepspeed.comm.torch is the torch package itself.
        ds_torch_comm = importlib.import_module("deepspeed.comm.torch")
        if hasattr(ds_torch_comm, "build_shm_op"):
            ds_torch_comm.build_shm_op = lambda: None


def deepspeed_config(
    optim: OptimConfig, train: TrainConfig, engine: EngineConfig, precision: str, micro: int
) -> dict[str, Any]:
    """Our settings as a DeepSpeed config; a user JSON (``engine.deepspeed_config``) is merged
    under ours, so batch geometry, clipping, ZeRO stage and precision always match the run."""
    config: dict[str, Any] = {}
    if engine.deepspeed_config:
        path = Path(engine.deepspeed_config)
        if not path.is_file():
            raise UserError(f"config key 'engine.deepspeed_config': file not found: {path}")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
    for key in ("optimizer", "scheduler"):
        if key in config:
            raise UserError(
                f"{engine.deepspeed_config}: remove '{key}'; the trainer passes its own AdamW and sets the "
                f"learning rate each step"
            )
    zero = dict(config.get("zero_optimization", {}))
    if "stage" in zero and zero["stage"] != engine.zero_stage:
        raise UserError(
            f"{engine.deepspeed_config}: zero_optimization.stage is {zero['stage']} but engine.zero_stage is "
            f"{engine.zero_stage}; set engine.zero_stage={zero['stage']} (or change the JSON)"
        )
    zero["stage"] = engine.zero_stage
    config.update(
        {
            "train_batch_size": train.batch_size,
            "train_micro_batch_size_per_gpu": micro,
            "gradient_accumulation_steps": train.grad_accum,
            "gradient_clipping": optim.grad_clip,
            "zero_optimization": zero,
            # bf16 as autocast over fp32 weights (like the DDP engine), not DeepSpeed's "bf16"
            # mode: that casts the weights to bf16 but not our fp32 inputs and noise, and the EMA
            # would average rounded weights.
            "torch_autocast": {"enabled": precision == "bf16", "dtype": "bfloat16"},
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
    )
    config.setdefault("zero_allow_untested_optimizer", True)
    return config


class DeepSpeedEngine(Engine):
    """DeepSpeed with our AdamW as client optimizer, ZeRO stages 0-3, bf16 where asked."""

    name = "deepspeed"

    def __init__(self, model: nn.Module, cfg: ExperimentConfig, env: DistEnv, micro: int, load_universal: bool) -> None:
        _skip_shm_build_if_asked()
        import deepspeed  # here, not at the top: seconds to import, and only this engine needs it

        self.deepspeed = deepspeed
        deepspeed.init_distributed(dist_backend="nccl" if env.device.type == "cuda" else "gloo")
        self.device = env.device
        self.precision = resolve_precision(cfg.engine, env.device)
        self.zero_stage = cfg.engine.zero_stage
        optimizer = build_optimizer(model, cfg.optim)
        config = deepspeed_config(cfg.optim, cfg.train, cfg.engine, self.precision, micro)
        # Resuming on another world size: DeepSpeed reads that mode from its config at initialize.
        self.load_universal = load_universal
        if load_universal:
            config["checkpoint"] = {**config.get("checkpoint", {}), "load_universal": True}
        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        self.model = self.engine.module
        self.optimizer = optimizer

    def train_step(self, compute_loss, num_micro: int) -> StepResult:
        total = torch.zeros((), device=self.device)
        finite_loss = True
        skipped_before = self.engine.skipped_steps
        for i in range(num_micro):
            loss = compute_loss(self.engine, i)
            bad = hdist.all_reduce_max(int(not bool(torch.isfinite(loss.detach()))), self.device)
            finite_loss = finite_loss and not bad
            if i == num_micro - 1 and not finite_loss:
                self.optimizer.skip_next = True  # DeepSpeed calls the client step at the boundary
            with hdist.collective("a DeepSpeed step"):
                self.engine.backward(loss)
                self.engine.step()
            total += loss.detach().float()
        mean_loss = hdist.all_reduce_mean(total / num_micro)
        grad_norm = self.engine.get_global_grad_norm()
        grad_norm = float("nan") if grad_norm is None else float(grad_norm)
        # ZeRO skips a step with non-finite gradients itself, before calling our optimizer: keep
        # the flag from leaking into the next step.
        deepspeed_skipped = self.engine.skipped_steps > skipped_before
        self.optimizer.skip_next = False
        return StepResult(float(mean_loss), grad_norm, deepspeed_skipped or not finite_loss)

    def gathered_parameters(self) -> contextlib.AbstractContextManager:
        if self.zero_stage < 3:
            return contextlib.nullcontext()
        return self.deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None)

    def save(self, folder: Path) -> None:
        # Every rank writes its partition; the tag is the (temporary) checkpoint folder.
        self.engine.save_checkpoint(str(folder.parent), tag=folder.name, save_latest=False)

    def load(self, folder: Path) -> None:
        if self.load_universal:
            folder = universal_checkpoint(folder, self.device)
        # The learning rate comes from the step (lr_at): a scheduler state in older checkpoints is ignored.
        load_path, _ = self.engine.load_checkpoint(
            str(folder.parent), tag=folder.name, load_optimizer_states=True, load_lr_scheduler_states=False
        )
        if load_path is None:
            raise UserError(f"{folder}: no DeepSpeed state; was this checkpoint written by engine.name=ddp?")


def build_engine(model: nn.Module, cfg: ExperimentConfig, env: DistEnv, micro: int, load_universal: bool) -> Engine:
    """The engine of ``cfg.engine``; ``load_universal``: DeepSpeed resumes a checkpoint of another world size."""
    if cfg.engine.name == "deepspeed":
        return DeepSpeedEngine(model, cfg, env, micro, load_universal)
    if cfg.engine.zero_stage:
        raise UserError("config key 'engine.zero_stage' needs engine.name=deepspeed")
    return DDPEngine(model, cfg, env)
