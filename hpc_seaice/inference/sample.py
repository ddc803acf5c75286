"""``hpc-seaice sample``: generate sea-ice states from a trained diffusion run into NetCDF.

Works alone or under torchrun / srun / mpirun: the N samples are split across ranks
(contiguous ranges), each rank writes its part next to the output, and rank 0 assembles one
NetCDF file. Sample i's noise is seeded from (seed, i), so sample i is the same whatever the
number of ranks and the batch size (up to float differences between batch sizes).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from hpc_seaice.data.format.samples_file import samples_dataset, write_samples
from hpc_seaice.data.loading.dataset import partition
from hpc_seaice.errors import UserError
from hpc_seaice.inference.ensemble import (
    check_diffusion_run,
    check_sampling_args,
    field_static,
    generate_ensemble,
    noise_warning,
    sample_attrs,
)
from hpc_seaice.inference.loading import load_inference_model
from hpc_seaice.outputs import check_free_space, check_output_file, check_scratch_dir
from hpc_seaice.runtime import distributed as hdist
from hpc_seaice.runtime.distributed import DistEnv


def _check_request(num: int, steps: int | None, batch_size: int, seed: int, out: Path, overwrite: bool) -> None:
    check_sampling_args(num, steps, batch_size, seed, ("--num", "--steps", "--batch-size", "--seed"))
    if out.suffix != ".nc":
        raise UserError(f"--out {out}: expected a .nc file")
    check_output_file(out, "--out", overwrite)
    check_scratch_dir(out.with_name(out.name + ".parts"), "--out", "rank*.npz")  # emptied by sample_run


def _check_size(num: int, out: Path, field_shape: tuple[int, ...]) -> None:
    """The samples must fit in rank 0's memory (it assembles the file) and on disk: say so before generating."""
    per_sample = 2 * 4 * int(np.prod(field_shape))  # float32 fields and their values before clipping
    needed = num * per_sample
    check_free_space(out, needed, "--out", f"{num} samples")
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return
    if 2 * needed > memory:
        raise UserError(
            f"--num {num}: rank 0 assembles the samples in memory, about {2 * needed / 1e9:.3g} GB, "
            f"more than this machine's {memory / 1e9:.3g} GB; write several files with fewer samples"
        )


def sample_run(
    run: str | os.PathLike,
    num: int,
    out: str | os.PathLike,
    env: DistEnv,
    *,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 4,
    checkpoint: str = "latest",
    overwrite: bool = False,
    name: str | None = None,
) -> int:
    """Generate ``num`` samples of diffusion run ``run`` into the NetCDF file ``out``, on every rank of ``env``.

    ``steps`` None takes the run's ``diffusion.sampler_steps``; ``name`` is the model's name in
    evaluation reports (default: the run folder's). Returns the exit code (0).
    """
    out = Path(out)
    _check_request(num, steps, batch_size, seed, out, overwrite)
    loaded = load_inference_model(run, checkpoint, env.device)
    check_diffusion_run(loaded)
    manifest = loaded.data_manifest
    if steps is None:
        steps = loaded.config.diffusion.sampler_steps
    warning = noise_warning(loaded)
    if warning and env.is_main:
        print(f"hpc-seaice sample: {warning}", file=sys.stderr, flush=True)
    static = field_static(loaded)
    _check_size(num, out, (5, *static.mask.shape))

    parts = out.with_name(out.name + ".parts")
    if env.is_main:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir()
        print(
            f"hpc-seaice sample | run {run} (step {loaded.step}, {manifest.kind} space) | {num} samples "
            f"on {env.world_size} rank(s) | Heun {steps} steps ({2 * steps - 1} network calls each)",
            flush=True,
        )
    hdist.barrier()
    mine = list(partition(num, env.rank, env.world_size))
    start = time.perf_counter()
    fields, raw = generate_ensemble(loaded, mine, seed, steps, batch_size, env.device, env.is_main)
    elapsed = time.perf_counter() - start
    np.savez(
        parts / f"rank{env.rank:05d}.npz",
        index=np.asarray(mine, dtype=np.int64),
        fields=fields,
        raw=raw,
    )
    hdist.barrier()
    if env.is_main:
        pieces = [np.load(path) for path in sorted(parts.glob("rank*.npz"))]
        index = np.concatenate([p["index"] for p in pieces])
        order = np.argsort(index)
        if not np.array_equal(index[order], np.arange(num)):
            raise RuntimeError("sample parts do not cover every sample exactly once")
        fields = np.concatenate([p["fields"] for p in pieces])[order]
        raw = np.concatenate([p["raw"] for p in pieces])[order]
        attrs = sample_attrs(loaded, steps, seed, name)
        write_samples(out, samples_dataset(fields, static.mask, static.lat, static.lon, attrs, raw=raw))
        shutil.rmtree(parts, ignore_errors=True)
        rate = len(mine) / elapsed if elapsed > 0 else float("nan")
        print(
            f"wrote {num} samples to {out} | rank 0 generated {len(mine)} in {elapsed:.1f} s "
            f"({rate:.3g} samples/s per rank, {env.device.type})",
            flush=True,
        )
    return 0
