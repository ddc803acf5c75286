"""Timing helpers of the speed benchmarks: devices, precision, contention-aware timers, peaks.

Shared by ``benchmarks.speed`` and ``benchmarks.scaling``: one way to time a call (synchronised,
after warm-up, repeated when other load took the cores) and one way to name a device's peak.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# Dense bf16 tensor-core peak (FLOP/s) by device name, for the MFU. The H200 has the H100 SXM's
# compute (more and faster memory only). Other devices: MFU is reported as null.
BF16_PEAK_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989.4e12),
    ("H200", 989.4e12),
    ("A100", 312e12),
)


def log(text: str) -> None:
    """One timestamped progress line (the benchmarks run for minutes)."""
    print(f"[speed {time.strftime('%H:%M:%S')}] {text}", flush=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks.speed: --device cuda but torch sees no GPU")
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    return ("bf16" if device.type == "cuda" else "fp32") if name == "auto" else name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s, what it is) of this device at this precision, or (None, why not)."""
    if device.type != "cuda":
        return None, "no MFU on CPU (no reference peak)"
    name = torch.cuda.get_device_name(device)
    if precision != "bf16":
        return None, f"no MFU: peak known for bf16 only ({name}, precision {precision})"
    for key, value in BF16_PEAK_FLOPS:
        if key in name:
            return value, f"{name}: {value / 1e12:.0f} TFLOP/s bf16 dense"
    return None, f"no MFU: bf16 peak of {name} unknown"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """GPU: peak allocated since the phase started. CPU: the process's peak RSS so far (cumulative)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Timing:
    times: list[float]  # wall seconds of each timed call
    warmup_s: float  # wall seconds of all warm-up calls
    cpu_share: float  # process CPU time / (wall time x threads) over the timed calls
    attempts: list[dict[str, Any]]  # every measurement made, when contended ones were repeated

    @property
    def median(self) -> float:
        return statistics.median(self.times)


# On a CPU, a measurement during which other processes took the cores (CPU share below this) is
# repeated up to RETRIES times and the least contended attempt is kept (set by --min-cpu-share,
# --retries). All attempts are recorded.
CONTENTION = {"min_cpu_share": 0.85, "retries": 2}


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int, label: str) -> Timing:
    """Wall times of ``repeats`` calls after ``warmup`` calls (synchronised).

    Also the share of the wall time this process spent on its threads' CPUs: well below 1 on a
    CPU run means other work took the cores, and the timings are inflated and noisy; such a
    measurement is repeated (see ``CONTENTION``).
    """
    t_warm = time.perf_counter()
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        log(f"{label}: warm-up {i + 1}/{warmup} {time.perf_counter() - t0:.3f} s")
    warm_s = time.perf_counter() - t_warm
    threads = torch.get_num_threads()
    attempts: list[dict[str, Any]] = []
    retries = CONTENTION["retries"] if device.type == "cpu" else 0
    for attempt in range(retries + 1):
        times = []
        cpu0 = time.process_time()
        for i in range(repeats):
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
            if repeats <= 5 or i in (0, repeats - 1):
                log(f"{label}: timed {i + 1}/{repeats} {times[-1]:.3f} s")
        share = (time.process_time() - cpu0) / max(sum(times) * threads, 1e-9)
        attempts.append({"times": times, "cpu_share": share})
        if device.type != "cpu" or share >= CONTENTION["min_cpu_share"]:
            break
        if attempt < retries:
            log(f"{label}: CPU share {100 * share:.0f}% (other load); measuring again")
    best = max(attempts, key=lambda a: a["cpu_share"])
    return Timing(best["times"], warm_s, best["cpu_share"], attempts)
