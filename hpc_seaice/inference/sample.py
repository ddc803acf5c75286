"""``hpc-seaice sample``: generate sea-ice states from a trained diffusion run into NetCDF.

Works alone or under torchrun / srun / mpirun: the N samples are split across ranks
(contiguous ranges), each rank writes its part next to the output, and rank 0 assembles one
NetCDF file. Sample i's noise is seeded from (seed, i), so sample i is the same whatever the
number of ranks and the batch size (up to float differences between batch sizes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.samples_file import samples_dataset, write_samples
from hpc_seaice.data.loading.dataset import partition
from hpc_seaice.errors import UserError
from hpc_seaice.inference.ensemble import (
    check_diffusion_run,
    check_sample_memory,
    check_sampling_args,
    field_static,
    generate_ensemble,
    noise_warning,
    sample_attrs,
)
from hpc_seaice.inference.loading import load_inference_model
from hpc_seaice.outputs import Output
from hpc_seaice.runtime import distributed as hdist


def _check_args(args: Any) -> Output:
    check_sampling_args(
        args.num, args.steps, args.batch_size, args.seed, ("--num", "--steps", "--batch-size", "--seed")
    )
    out = Path(args.out)
    if out.suffix != ".nc":
        raise UserError(f"--out {out}: expected a .nc file")
    output = Output(out, "sample", folder=False, overwrite=args.overwrite, inputs=[("--run", args.run)])
    return output.check()


def _check_size(args: Any, output: Output, field_shape: tuple[int, ...]) -> None:
    """The samples must fit in rank 0's memory (it assembles the file) and on disk: say so before generating."""
    needed = check_sample_memory(args.num, field_shape, "--num")
    # the ranks' parts and the NetCDF file (compressed, at most as large) are on disk together
    output.check(2 * needed, f"{args.num} samples")


def _begin(args: Any, output: Output, field_shape: tuple[int, ...]) -> str:
    """Rank 0: the size checks, then the lock and the temporary folder every rank writes its part into."""
    _check_size(args, output, field_shape)
    return str(output.begin())


def sample_run(args: Any, env: Any) -> int:
    """Generate ``args.num`` samples into ``args.out`` through :class:`~hpc_seaice.outputs.Output`:
    the ranks' parts and the file go into a temporary folder beside it; the file is renamed into
    place only when complete, so a failure or a kill leaves an old ``--out`` as it was."""
    output = _check_args(args)
    loaded = load_inference_model(args.run, args.checkpoint, env.device)
    check_diffusion_run(loaded)
    if args.steps is None:
        args.steps = loaded.config.diffusion.sampler_steps
    warning = noise_warning(loaded)
    if warning and env.is_main:
        print(f"hpc-seaice sample: {warning}", file=sys.stderr, flush=True)
    static = field_static(loaded)
    staging = Path(str(hdist.decided_by_main(lambda: _begin(args, output, (5, *static.mask.shape)))))
    if not env.is_main:
        with output.errors():
            return _sample(args, env, loaded, static, staging, output)
    with output.writing(begin=False):  # rank 0 holds the lock and removes the folder after a failure
        return _sample(args, env, loaded, static, staging, output)


def _sample(args: Any, env: Any, loaded: Any, static: Any, parts: Path, output: Output) -> int:
    if env.is_main:
        print(
            f"hpc-seaice sample | run {args.run} (step {loaded.step}, {loaded.data_manifest.kind} space) | "
            f"{args.num} samples on {env.world_size} rank(s) | Heun {args.steps} steps "
            f"({2 * args.steps - 1} network calls each)",
            flush=True,
        )
    mine = list(partition(args.num, env.rank, env.world_size))
    start = time.perf_counter()
    fields, raw = generate_ensemble(loaded, mine, args.seed, args.steps, args.batch_size, env.device, env.is_main)
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
        if not np.array_equal(index[order], np.arange(args.num)):
            raise RuntimeError("sample parts do not cover every sample exactly once")
        fields = np.concatenate([p["fields"] for p in pieces])[order]
        raw = np.concatenate([p["raw"] for p in pieces])[order]
        attrs = sample_attrs(loaded, args.steps, args.seed, args.name)
        write_samples(output.path, samples_dataset(fields, static.mask, static.lat, static.lon, attrs, raw=raw))
        output.commit()
        rate = len(mine) / elapsed if elapsed > 0 else float("nan")
        print(
            f"wrote {args.num} samples to {output.target} | rank 0 generated {len(mine)} in {elapsed:.1f} s "
            f"({rate:.3g} samples/s per rank, {env.device.type})",
            flush=True,
        )
    return 0


def cli_sample(args: Any) -> int:
    """``hpc-seaice sample``, on every rank of whatever launcher started it."""
    return sample_run(args, hdist.init_distributed())
