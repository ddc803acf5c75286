"""``hpc-seaice sample``: generate sea-ice states from a trained diffusion run into NetCDF.

Works alone or under torchrun / srun / mpirun: the N samples are split across ranks
(contiguous ranges), each rank writes its part next to the output, and rank 0 assembles one
NetCDF file. Sample i's noise is seeded from (seed, i), so sample i is the same whatever the
number of ranks and the batch size (up to float differences between batch sizes).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpc_seaice.data.format.samples_file import write_samples
from hpc_seaice.data.loading.dataset import partition
from hpc_seaice.errors import UserError
from hpc_seaice.inference.ensemble import (
    check_sample_memory,
    check_sampling_args,
    ensemble_dataset,
    generate_ensemble,
    open_diffusion_run,
)
from hpc_seaice.inference.loading import LoadedRun
from hpc_seaice.outputs import Output
from hpc_seaice.runtime import distributed as hdist
from hpc_seaice.runtime.distributed import DistEnv


@dataclass(frozen=True)
class SampleRequest:
    """What to sample: ``num`` samples of diffusion run ``run`` into the NetCDF file ``out``.

    ``steps`` None takes the run's ``diffusion.sampler_steps``; ``name`` is the model's name in
    evaluation reports (default: the run folder's). The fields are the options of ``hpc-seaice
    sample``, by the same names.
    """

    run: str | os.PathLike
    num: int
    out: str | os.PathLike
    steps: int | None = None
    seed: int = 0
    batch_size: int = 4
    checkpoint: str = "latest"
    overwrite: bool = False
    name: str | None = None
    decoder_noise: str = "none"  # latent runs: "spectral" adds noise with the VAE's residual spectrum


def _check_request(request: SampleRequest) -> Output:
    check_sampling_args(
        request.num, request.steps, request.batch_size, request.seed, ("--num", "--steps", "--batch-size", "--seed")
    )
    out = Path(request.out)
    if out.suffix != ".nc":
        raise UserError(f"--out {out}: expected a .nc file")
    output = Output(out, "sample", folder=False, overwrite=request.overwrite, inputs=[("--run", request.run)])
    return output.check()


def _check_size(request: SampleRequest, output: Output, field_shape: tuple[int, ...]) -> None:
    """The samples must fit in rank 0's memory (it assembles the file) and on disk: say so before generating."""
    needed = check_sample_memory(request.num, field_shape, "--num")
    # the ranks' parts and the NetCDF file (compressed, at most as large) are on disk together
    output.check(2 * needed, f"{request.num} samples")


def _begin(request: SampleRequest, output: Output, field_shape: tuple[int, ...]) -> str:
    """Rank 0: the size checks, then the lock and the temporary folder every rank writes its part into."""
    _check_size(request, output, field_shape)
    return str(output.begin())


def sample_run(request: SampleRequest, env: DistEnv) -> int:
    """Generate ``request.num`` samples into ``request.out``, on every rank of ``env``, through
    :class:`~hpc_seaice.outputs.Output`: the ranks' parts and the file go into a temporary folder
    beside it; the file is renamed into place only when complete, so a failure or a kill leaves an
    old ``--out`` as it was. Returns the exit code (0)."""
    output = _check_request(request)
    warn_as = "hpc-seaice sample" if env.is_main else None
    loaded = open_diffusion_run(request.run, request.checkpoint, env.device, warn_as, request.decoder_noise)
    if request.steps is None:
        request = dataclasses.replace(request, steps=loaded.sampler_steps)
    field_shape = (5, *loaded.field_static.mask.shape)
    staging = Path(str(hdist.decided_by_main(lambda: _begin(request, output, field_shape))))
    if not env.is_main:
        with output.errors():
            return _sample(request, env, loaded, staging, output)
    with output.writing(begin=False):  # rank 0 holds the lock and removes the folder after a failure
        return _sample(request, env, loaded, staging, output)


def _sample(request: SampleRequest, env: DistEnv, loaded: LoadedRun, parts: Path, output: Output) -> int:
    assert request.steps is not None  # sample_run put the run's default in
    if env.is_main:
        space, after = f"{loaded.data_manifest.kind} space", ""
        if loaded.base is not None:  # a refiner: its latent run generates, then its own sampler adds the residual
            space = f"latent space + refiner of {loaded.base.run_dir} step {loaded.base.step}"
            refine = loaded.config.diffusion.sampler_steps
            after = f" + refiner Heun {refine} steps ({2 * refine - 1} calls)"
        if request.decoder_noise != "none":
            after += f" + {request.decoder_noise} decoder noise"
        print(
            f"hpc-seaice sample | run {request.run} (step {loaded.step}, {space}) | "
            f"{request.num} samples on {env.world_size} rank(s) | Heun {request.steps} steps "
            f"({2 * request.steps - 1} network calls each){after}",
            flush=True,
        )
    mine = list(partition(request.num, env.rank, env.world_size))
    start = time.perf_counter()
    fields, raw = generate_ensemble(
        loaded, mine, request.seed, request.steps, request.batch_size, env.device, env.is_main, request.decoder_noise
    )
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
        if not np.array_equal(index[order], np.arange(request.num)):
            raise RuntimeError("sample parts do not cover every sample exactly once")
        fields = np.concatenate([p["fields"] for p in pieces])[order]
        raw = np.concatenate([p["raw"] for p in pieces])[order]
        dataset = ensemble_dataset(
            loaded, fields, raw, request.steps, request.seed, request.name, request.decoder_noise
        )
        write_samples(output.path, dataset)
        output.commit()
        rate = len(mine) / elapsed if elapsed > 0 else float("nan")
        print(
            f"wrote {request.num} samples to {output.target} | rank 0 generated {len(mine)} in {elapsed:.1f} s "
            f"({rate:.3g} samples/s per rank, {env.device.type})",
            flush=True,
        )
    return 0
