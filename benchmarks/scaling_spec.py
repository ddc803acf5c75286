"""The CPU and single-GPU scaling matrix of ``benchmarks.scaling``: which runs, and the targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WEAK_TARGET = 0.90
DATA_WAIT_TARGET = 0.05


@dataclass
class RunSpec:
    name: str
    ranks: int
    threads: int  # OMP threads per rank
    global_batch: int
    engine: str = "ddp"  # ddp | deepspeed
    zero_stage: int = 0

    @property
    def per_rank_batch(self) -> int:
        return self.global_batch // self.ranks

    @property
    def engine_label(self) -> str:
        return f"DeepSpeed ZeRO-{self.zero_stage}" if self.engine == "deepspeed" else "DDP"


def cpu_runs(batch: int, weak_batches: Sequence[int] = ()) -> list[RunSpec]:
    """The CPU matrix at per-rank batch ``batch``: weak, strong and engine comparisons; then a
    1-vs-2-rank pair at each of ``weak_batches`` (how the weak-scaling efficiency depends on the
    work per step)."""
    runs = [
        RunSpec("1r-b1x-t1", 1, 1, batch),  # weak baseline: one rank, one thread
        RunSpec("2r-ddp", 2, 1, 2 * batch),  # 2 ranks x 1 thread: weak (same per-rank batch) and strong
        RunSpec("1r-b2x-t1", 1, 1, 2 * batch),  # strong baseline: same global batch, one thread
        RunSpec("1r-b2x-t2", 1, 2, 2 * batch),  # same global batch on the same 2 cores, via threads
        RunSpec("2r-zero1", 2, 1, 2 * batch, "deepspeed", 1),
        RunSpec("2r-zero2", 2, 1, 2 * batch, "deepspeed", 2),
    ]
    for b in weak_batches:
        if b != batch:
            runs += [RunSpec(f"weak-pb{b}-1r", 1, 1, b), RunSpec(f"weak-pb{b}-2r", 2, 1, 2 * b)]
    return runs


def gpu_runs(batch: int) -> list[RunSpec]:
    """One GPU: no multi-process scaling; the trainer's throughput and data wait, DDP vs DeepSpeed engine."""
    return [
        RunSpec("1gpu-ddp", 1, 4, batch),
        RunSpec("1gpu-zero1", 1, 4, batch, "deepspeed", 1),
    ]
