"""Rank-0 run monitoring: ``metrics.jsonl``, TensorBoard scalars and images, the progress bar.

Every other rank gets a :class:`Monitor` that does nothing, so the trainer never branches on the
rank to log. On resume, records past the checkpoint's step are dropped from ``metrics.jsonl``
and TensorBoard (``purge_step``), so every step is logged exactly once.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hpc_seaice.fileio import atomic_write


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux: the process's peak resident memory.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records logged after ``last_step`` (they are re-done after a resume)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash
    atomic_write(path, "".join(line + "\n" for line in kept))


class Monitor:
    """Does nothing; what non-zero ranks get."""

    def scalars(self, step: int, values: dict[str, float], record: bool = True) -> None:
        pass

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        pass

    def progress(self, step: int, text: str = "") -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class RankZeroMonitor(Monitor):
    def __init__(self, run_dir: Path, start_step: int, max_steps: int, progress: bool) -> None:
        # Here, not at the top: TensorBoard takes seconds to import, and only rank 0 writes to it.
        from torch.utils.tensorboard import SummaryWriter

        self.metrics_path = run_dir / "metrics.jsonl"
        truncate_metrics(self.metrics_path, start_step)
        self.metrics = open(self.metrics_path, "a", buffering=1)
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)
        self.bar = None
        if progress:
            self.bar = tqdm(
                total=max_steps,
                initial=start_step,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                mininterval=1.0 if sys.stderr.isatty() else 30.0,
            )

    def scalars(self, step: int, values: dict[str, float], record: bool = True) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and np.isfinite(value):
                self.writer.add_scalar(key, value, step)
        if record:
            self.metrics.write(json.dumps({"step": step, **values}) + "\n")

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        for key, image in images.items():
            self.writer.add_image(key, image, step, dataformats="HW")

    def progress(self, step: int, text: str = "") -> None:
        if self.bar is not None:
            if text:
                self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(step - self.bar.n)  # tqdm rate-limits the redraw (mininterval)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.writer.flush()
        self.writer.close()
        self.metrics.close()


def build_monitor(is_main: bool, run_dir: Path, start_step: int, max_steps: int, progress: bool) -> Monitor:
    return RankZeroMonitor(run_dir, start_step, max_steps, progress) if is_main else Monitor()


def field_image(field: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """A 2-D field scaled to [0, 1] over its ocean cells for TensorBoard."""
    field = np.asarray(field, dtype=np.float32)
    valid = field if mask is None else field[mask > 0]
    lo, hi = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 1.0)
    image = (field - lo) / (hi - lo) if hi > lo else np.zeros_like(field)
    if mask is not None:
        image = np.where(mask > 0, image, 0.0)
    return np.clip(image, 0.0, 1.0)
