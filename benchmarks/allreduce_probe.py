"""How long the gradient all-reduce of each DDP step is in flight: is scaling communication-bound?

The cluster scaling benchmark submits its jobs with :func:`train_with_probe` as the entry instead of
the trainer itself (same submission code, same trainer): it registers a DDP communication hook on
every ``DistributedDataParallel`` the trainer builds, then runs the trainer unchanged. The hook does
what DDP does by default (``allreduce_hook``: an averaging all-reduce per gradient bucket) and notes,
per step, when the first bucket was handed to the network and when the last one came back. That span
over the step time is the **all-reduce share**. DDP overlaps the all-reduce with the rest of the
backward pass, so the share is an upper bound of the time communication costs; a share near 0 says
scaling is not communication-bound, a share near 1 says it may be. Each rank writes
``<run>/allreduce/rank<R>.json`` when training returns. Engines without DDP (DeepSpeed) and single
processes have no hook: no file, "-" in the table.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROBE_FOLDER = "allreduce"
ENTRY = "benchmarks.allreduce_probe:train_with_probe"


class BucketSpans:
    """Per step: [first bucket launched, last bucket finished], in ``time.perf_counter`` seconds."""

    def __init__(self) -> None:
        self.spans: list[list[float]] = []
        self.buckets = 0
        self._step_open = False
        self._lock = threading.Lock()  # completion callbacks may run on the backend's threads

    def launched(self, now: float, is_last: bool) -> int:
        with self._lock:
            if not self._step_open:
                self.spans.append([now, now])
                self._step_open = True
            index = len(self.spans) - 1
            self._step_open = not is_last
            self.buckets += 1
            return index

    def finished(self, index: int, now: float) -> None:
        with self._lock:
            self.spans[index][1] = max(self.spans[index][1], now)

    def durations(self) -> list[float]:
        with self._lock:
            return [end - start for start, end in self.spans]


# No annotations: DDP checks them and rejects the strings that `from __future__ import annotations` makes.
def timed_allreduce_hook(spans, bucket):
    """DDP's default all-reduce of one bucket, with its launch and completion noted."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    index = spans.launched(time.perf_counter(), bucket.is_last())
    future = allreduce_hook(None, bucket)

    def done(fut: Any) -> Any:
        spans.finished(index, time.perf_counter())
        return fut.value()

    return future.then(done)


def install(spans: BucketSpans) -> Callable[[], None]:
    """Make every DDP built from now on use the timed hook; returns a function that undoes it."""
    from torch.nn.parallel import DistributedDataParallel

    original = DistributedDataParallel.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.register_comm_hook(spans, timed_allreduce_hook)

    DistributedDataParallel.__init__ = init  # type: ignore[method-assign]

    def restore() -> None:
        DistributedDataParallel.__init__ = original  # type: ignore[method-assign]

    return restore


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def train_with_probe(cfg: Any) -> int:
    """The trainer's ``run_training(cfg)`` with the timed hook; writes this rank's spans after it."""
    from hpc_seaice.train.trainer import run_training

    spans = BucketSpans()
    restore = install(spans)
    try:
        return int(run_training(cfg))
    finally:
        restore()
        if spans.spans:
            folder = Path(cfg.run.dir) / PROBE_FOLDER
            folder.mkdir(parents=True, exist_ok=True)
            record = {"rank": _rank(), "buckets": spans.buckets, "span_s": spans.durations()}
            (folder / f"rank{record['rank']}.json").write_text(json.dumps(record) + "\n")


def allreduce_span(run_dir: Path, skip_steps: int) -> dict[str, Any] | None:
    """Rank 0's median all-reduce span after ``skip_steps`` warm-up steps; None without a probe file."""
    path = Path(run_dir) / PROBE_FOLDER / "rank0.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    used = record["span_s"][skip_steps:] or record["span_s"]
    if not used:
        return None
    steps = len(record["span_s"])
    return {"allreduce_s": statistics.median(used), "steps": steps, "buckets_per_step": record["buckets"] / steps}
