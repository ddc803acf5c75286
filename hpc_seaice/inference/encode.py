"""``hpc-seaice encode``: cache the VAE latents of every split as a sharded latent data set.

Latent diffusion then trains on these shards and never runs the encoder. Each rank encodes a
contiguous part of each split and writes its own shards (``<split>-r<rank>-NNNNN.h5``: one
writer per file, so no parallel HDF5 is needed); rank 0 merges the manifests and computes the
latent standardisation statistics over the train split, stored in the latent ``static.h5``: latent
diffusion trains on them and its samples are decoded with them. The same pass stores the std of
the latents' leading principal component (``pc1_std``), which ``sample`` checks its noise range
against. The VAE's run is only read. The manifest's ``source`` records the VAE checkpoint, the
sha256 of its weights and the identity of the fields set encoded
(:class:`~hpc_seaice.data.format.provenance.LatentProvenance` reads them back), so a latent set is
never decoded by other weights or on another coast than it was made with.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from hpc_seaice.data.format.manifest import Layout, in_split, merge_manifests, read_manifest, write_manifest
from hpc_seaice.data.format.provenance import WEIGHTS_FILE, encoding_source
from hpc_seaice.data.format.replace import dataset_output, verify_new
from hpc_seaice.data.format.shards import ShardWriter
from hpc_seaice.data.format.static import read_static, write_static
from hpc_seaice.data.format.verify import verify_dataset
from hpc_seaice.data.geo.latent_grid import block_mean
from hpc_seaice.data.loading.dataset import ShardedDataset, partition
from hpc_seaice.data.stats.normalisation import compute_stats
from hpc_seaice.errors import UserError
from hpc_seaice.fileio import sha256_file
from hpc_seaice.inference.loading import load_inference_model
from hpc_seaice.outputs import Output
from hpc_seaice.runtime import distributed as hdist
from hpc_seaice.runtime.checkpoint import find_checkpoint, pin_checkpoint
from hpc_seaice.runtime.distributed import DistEnv


def posterior_summary(latent_var: np.ndarray, posterior_var: np.ndarray) -> str:
    """One line comparing the mean posterior variance with the variance of the latent means.

    Training the latent model on posterior samples (diffusion.latent_posterior=sample) widens each
    latent by the posterior variance; where it is a small fraction of the latent variance the choice
    between samples and means hardly matters.
    """
    ratio = posterior_var / np.maximum(latent_var, 1e-30)
    return (
        f"mean posterior variance over train: {np.round(posterior_var, 4).tolist()}; "
        f"as a fraction of the latent variance: mean {ratio.mean():.3g}, max {ratio.max():.3g}"
    )


def _check_and_pin(autoencoder_run: str, data: str, output: Output) -> int:
    """Rank 0, before any work: the cheap data checks, the output's checks, and the VAE checkpoint
    pinned for the latent set (its run may go on training and prune it); returns its step."""
    output.check()
    if not Path(data).is_dir():
        raise UserError(f"--data {data}: no such data set folder")
    verify_dataset(data, progress=False, hashes=False, max_shards=3, samples_per_shard=4)
    if not (Path(autoencoder_run) / "config.yaml").is_file():
        raise UserError(f"--autoencoder {autoencoder_run}: not a run folder (no config.yaml)")
    folder = find_checkpoint(autoencoder_run, "latest")
    try:
        pin_checkpoint(folder, output.target)
    except OSError as exc:
        print(f"hpc-seaice encode: warning: cannot pin {folder} ({exc.strerror}): keep it", file=sys.stderr)
    return int(folder.name.removeprefix("step_"))


def _begin(output: Output, needed: int, count: int) -> str:
    """Rank 0: the free space for the new set, the lock and the temporary folder every rank writes into."""
    output.check(needed, f"{count} latents (mean and log-variance)")
    return str(output.begin())


def encode_dataset(
    autoencoder_run: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    batch_size: int,
    overwrite: bool,
    env: DistEnv,
) -> Path:
    """Encode every split of ``data`` with the VAE of ``autoencoder_run`` into the latent set ``out``.

    Written through :class:`~hpc_seaice.outputs.Output`: beside ``out`` first, swapped in by rank 0
    when complete and checked; a failure or a kill on the way leaves an old set at ``out`` intact.
    """
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    output = dataset_output(out, "encode", overwrite, [("--data", data), ("--autoencoder", autoencoder_run)])
    step = hdist.decided_by_main(lambda: _check_and_pin(autoencoder_run, data, output))
    loaded = load_inference_model(autoencoder_run, step, device=env.device, option="")  # no --checkpoint
    if loaded.config.stage != "autoencoder":
        raise UserError(f"--autoencoder {autoencoder_run}: a {loaded.config.stage} run, not an autoencoder run")
    vae = loaded.model
    fields = read_manifest(data)
    static = read_static(data)
    if fields.kind != "fields" or list(fields.variables) != list(loaded.data_manifest.variables):
        raise UserError(f"--data {data}: variables {fields.variables} do not match the autoencoder's data")
    if list(fields.grid) != list(loaded.data_manifest.grid):
        raise UserError(f"--data {data}: grid {fields.grid} != the autoencoder's {loaded.data_manifest.grid}")
    if loaded.config.vae.mask_channel:  # encode --data with its own coast, as the latent denoiser will see it
        vae.set_ocean_mask(torch.as_tensor(static.mask, dtype=torch.float32, device=env.device))
    latent_shape = tuple(vae.latent_shape(*fields.grid))
    needed = 2 * 4 * int(np.prod(latent_shape)) * fields.num_samples
    staging = Path(str(hdist.decided_by_main(lambda: _begin(output, needed, fields.num_samples))))
    if not env.is_main:
        return _encode(loaded, data, staging, output, batch_size, env, fields, static, latent_shape)
    with output.writing(begin=False):  # rank 0 holds the lock and removes the folder after a failure
        return _encode(loaded, data, staging, output, batch_size, env, fields, static, latent_shape)


def _encode(
    loaded: Any,
    data: str,
    out_dir: Path,
    output: Output,
    batch_size: int,
    env: DistEnv,
    fields: Any,
    static: Any,
    latent_shape: tuple[int, ...],
) -> Path:
    """Every rank encodes its part of each split into ``out_dir`` (the temporary folder); rank 0
    adds the manifest and statistics and swaps the set in."""
    vae = loaded.model
    autoencoder_run = str(loaded.run_dir)
    channels = latent_shape[0]
    factor = fields.grid[0] // latent_shape[1]

    manifests = []
    posterior_var = np.zeros(channels + 1)  # train split: per-channel sums of sigma^2, then the count
    everything = ShardedDataset(data, split=None)  # the time of every sample: which splits have any
    # An empty split has nothing to encode, and the latent set does not list it (verify refuses a
    # split without samples).
    splits = {name: span for name, span in fields.splits.items() if in_split(everything.times, span).any()}
    for split in splits:
        dataset = ShardedDataset(data, split=split)
        mine = list(partition(len(dataset), env.rank, env.world_size))
        if not mine:
            continue
        layout = Layout.latent(channels, latent_shape[1:])
        writer = ShardWriter(out_dir, layout, max(256, batch_size), shard_prefix=f"{split}-r{env.rank:03d}")
        bar = tqdm(total=len(mine), desc=f"encode {split}", unit="sample", disable=not env.is_main, file=sys.stderr)
        with writer, torch.no_grad():
            for first in range(0, len(mine), batch_size):
                index = mine[first : first + batch_size]
                x = torch.stack([dataset[i] for i in index]).to(env.device)
                mean, logvar = vae.encode(x)
                writer.write(mean.float().cpu().numpy(), dataset.times[index], logvar.float().cpu().numpy())
                if split == "train":
                    posterior_var[:-1] += logvar.float().exp().sum(dim=(0, 2, 3)).double().cpu().numpy()
                    posterior_var[-1] += len(index) * latent_shape[1] * latent_shape[2]
                bar.update(len(index))
        bar.close()
        manifests.append(writer.build_manifest(splits=splits))
    gathered: list[Any] = [None] * env.world_size
    if hdist.is_initialized():
        with hdist.collective("gathering the ranks' latent manifests"):  # a lost peer: one line, not a traceback
            torch.distributed.all_gather_object(gathered, (manifests, posterior_var))
    else:
        gathered = [(manifests, posterior_var)]
    parts = [m for rank_parts, _ in gathered for m in rank_parts]
    var_sums = np.sum([sums for _, sums in gathered], axis=0)
    if not parts:
        raise UserError(f"--data {data}: no samples in any split")
    failure: BaseException | None = None
    if env.is_main:
        try:
            manifest = merge_manifests(parts)
            weights = find_checkpoint(autoencoder_run, loaded.step) / WEIGHTS_FILE  # the pinned checkpoint it used
            manifest.source = encoding_source(autoencoder_run, loaded.step, sha256_file(weights), data, fields, static)
            write_manifest(out_dir, manifest)
            ones = np.ones(latent_shape[1:], dtype=np.float32)
            write_static(out_dir, ones, block_mean(static.lat, factor), block_mean(static.lon, factor))
            _, std = compute_stats(out_dir, "train", progress=False)  # stored in the latent static.h5
            pc1 = read_static(out_dir).pc1_std or float("nan")  # leading-PC std of the latents, stored by compute_stats
            output.commit(verify_new)
            print(
                f"encoded {manifest.num_samples} samples of {data} into {output.target} "
                f"({channels} x {latent_shape[1]} x {latent_shape[2]} latents, {len(manifest.shards)} shards); "
                f"latent std over train: {np.round(std, 3).tolist()}; leading PC std {pc1:.4g}",
                flush=True,
            )
            if var_sums[-1] > 0:
                print(posterior_summary(np.square(std), var_sums[:-1] / var_sums[-1]), flush=True)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after telling the other ranks
            failure = exc
    # Rank 0 finishes alone; the others must learn that it failed instead of waiting for it.
    if hdist.all_reduce_max(int(failure is not None), env.device):
        if failure is not None:
            raise failure
        raise UserError("rank 0 could not finish the latent data set (its message says why)")
    hdist.barrier()
    return output.target
