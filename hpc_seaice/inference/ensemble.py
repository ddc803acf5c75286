"""Generating an ensemble from a diffusion run: what ``hpc-seaice sample``, ``hs.open_run`` and the step sweep share.

Sample ``i`` starts from noise seeded by ``(seed, i)``, so a sample is the same whichever command,
rank or batch made it (up to float differences between batch sizes).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from hpc_seaice.data.format.samples_file import samples_dataset
from hpc_seaice.diffusion.noise import per_sample_normal
from hpc_seaice.diffusion.sampler import noise_range_warning, sampler_sigma_range
from hpc_seaice.errors import UserError
from hpc_seaice.inference.decoder_noise import DEFAULT_STATES, MODES, SpectralDecoderNoise
from hpc_seaice.inference.generate import decoder_for, generate
from hpc_seaice.inference.loading import LoadedRun, load_inference_model
from hpc_seaice.inference.refine import Refinement

SALT_SAMPLE = 11  # keeps sampling noise apart from training noise streams
SALT_REFINE = 12  # a refiner's residual noise, apart from its latent run's sampling noise
SALT_DECODER_NOISE = 13  # the spectral decoder noise of a latent run
DECODER_NOISE = MODES
SAMPLER_NAME = "heun (Karras et al. 2022, Alg. 2)"
API_NAMES = ("n", "steps", "batch_size", "seed")  # how ``Run.sample`` calls them; the CLI passes its options


class SamplingArgumentError(UserError, ValueError):
    """A bad sample count, step count, batch size or seed: one line and exit 2 on the CLI, a ValueError in Python."""


def check_sampling_args(
    n: int, steps: int | None, batch_size: int, seed: int, names: tuple[str, str, str, str] = API_NAMES
) -> None:
    """The one check of the sampling arguments, for ``hpc-seaice sample`` and ``Run.sample`` alike.

    ``names`` label the four values in the message (``--num`` ... on the command line), so the user
    reads the option they typed; ``steps`` may be None (the run's ``diffusion.sampler_steps``).
    """
    values = (n, 1 if steps is None else steps, batch_size, seed)
    for label, value, low in zip(names, values, (1, 1, 1, 0), strict=True):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SamplingArgumentError(f"{label} must be an integer >= {low}, got {value!r}")


def check_sample_memory(n: int, field_shape: tuple[int, ...], label: str) -> int:
    """Bytes of ``n`` samples with their raw copies (float32); refused when over this machine's memory.

    The CLI's rank 0 and ``Run.sample`` both hold every sample in memory at the end.
    """
    needed = n * 2 * 4 * int(np.prod(field_shape))
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return needed
    if 2 * needed > memory:
        raise SamplingArgumentError(
            f"{label} {n}: the samples are assembled in memory, about {2 * needed / 1e9:.3g} GB, "
            f"more than this machine's {memory / 1e9:.3g} GB; sample fewer at a time"
        )
    return needed


def resolve_device(device: str | None) -> torch.device:
    """The device to sample on: CUDA when there is one (default); a named device that this machine
    lacks or a name torch does not know is one clear error, not a failure deep inside loading."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise SamplingArgumentError(f"device {device!r} is not a device name torch knows (cpu, cuda, cuda:1)") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise SamplingArgumentError(f"device {device!r}: CUDA is not available on this machine; use device='cpu'")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise SamplingArgumentError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return chosen


def open_diffusion_run(
    run_dir: str | os.PathLike, checkpoint: str | int, device: torch.device, warn_as: str | None = None
) -> LoadedRun:
    """Load a diffusion (or refiner) run for sampling: the one path of ``hpc-seaice sample``, ``hs.open_run`` and
    the step sweep. Another stage (a VAE run) is a one-line error here, not a failure inside the
    sampler; a sampler that starts from too little noise for the run's data is said once on stderr,
    prefixed ``warn_as`` (None: not said, e.g. on ranks other than 0)."""
    loaded = load_inference_model(run_dir, checkpoint, device)
    if loaded.config.stage not in ("diffusion", "refiner"):
        raise UserError(
            f"{loaded.run_dir}: an {loaded.config.stage} run; sampling needs a diffusion run (or a refiner run)"
        )
    warning = noise_warning(loaded)
    if warning and warn_as is not None:
        print(f"{warn_as}: {warning}", file=sys.stderr, flush=True)
    return loaded


def noise_warning(loaded: LoadedRun) -> str | None:
    """The one-line warning when the sampler (a refiner's: its latent run's) starts from too little noise."""
    loaded = loaded.base or loaded
    diffusion = loaded.config.diffusion
    sigma_min, sigma_max = sampler_sigma_range(diffusion)
    return noise_range_warning(
        sigma_max, loaded.data_static.pc1_std, sigma_min, diffusion.sampler_spacing, diffusion.sampler_rho
    )


def check_decoder_noise(loaded: LoadedRun, decoder_noise: str, label: str = "decoder_noise") -> None:
    """``spectral`` decoder noise is for a latent run's decoder; anything else is one line."""
    if decoder_noise not in DECODER_NOISE:
        raise SamplingArgumentError(f"{label} must be one of {', '.join(DECODER_NOISE)}, got {decoder_noise!r}")
    if decoder_noise != "none" and not loaded.is_latent:
        kind = "a refiner" if loaded.base is not None else "a data-space"
        raise SamplingArgumentError(
            f"{label} {decoder_noise}: {loaded.run_dir} is {kind} run; it applies to latent runs"
        )


def decoder_noise_of(loaded: LoadedRun, device: torch.device) -> SpectralDecoderNoise:
    """The spectral decoder noise of a latent run: its VAE's residual spectrum on the fields set it encodes."""
    assert loaded.provenance is not None and loaded.vae is not None
    fields, _ = loaded.provenance.fields
    bounds = (np.asarray(fields.lower, np.float32), np.asarray(fields.upper, np.float32))
    return SpectralDecoderNoise.fit(loaded.vae, str(loaded.provenance.fields_dataset), *bounds, device=device)


def generate_ensemble(
    loaded: LoadedRun,
    indices: Sequence[int],
    seed: int,
    steps: int,
    batch_size: int,
    device: torch.device,
    progress: bool = False,
    decoder_noise: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """Physical fields ``[N, 5, H, W]`` (clipped, land 0) and their values before clipping, for ``indices``.

    A refiner run generates with its latent run (sample ``i`` is that run's sample ``i``), then
    adds a residual drawn from its own noise stream in its own ``diffusion.sampler_steps``.
    ``decoder_noise="spectral"`` (latent runs): the decoded field plus noise with the VAE's
    residual spectrum (:mod:`.decoder_noise`), from a noise stream of its own.
    """
    check_decoder_noise(loaded, decoder_noise)
    refiner, generator = (loaded, loaded.base) if loaded.base is not None else (None, loaded)
    manifest, static = generator.data_manifest, generator.data_static
    shape = (len(manifest.variables), *manifest.grid)
    model_mask = torch.as_tensor(static.mask, dtype=torch.float32, device=device)
    field_mask = generator.field_static.mask  # one source with the denoiser's ocean fraction: the provenance
    decode = decoder_for(manifest, static, generator.vae, field_mask, device)
    field_shape = (5, *field_mask.shape)
    if refiner is not None:
        refine = refinement_of(refiner, device)
    spectral = decoder_noise_of(loaded, device) if decoder_noise == "spectral" else None
    grid = field_mask.shape
    fields_out, raw_out = [np.zeros((0, 5, *grid), np.float32)], [np.zeros((0, 5, *grid), np.float32)]
    bar = tqdm(total=len(indices), unit="sample", disable=not progress, file=sys.stderr)
    for first in range(0, len(indices), batch_size):
        index = torch.as_tensor(list(indices[first : first + batch_size]), dtype=torch.int64)
        noise = per_sample_normal(index, shape, seed, SALT_SAMPLE, device)
        fields, raw = decode(generate(generator.model, noise, model_mask, generator.config.diffusion, steps))
        if refiner is not None:
            fields, raw = refine(fields, per_sample_normal(index, field_shape, seed, SALT_REFINE, device))
        if spectral is not None:
            fields, raw = spectral(fields, per_sample_normal(index, field_shape, seed, SALT_DECODER_NOISE, device))
        fields_out.append(fields.float().cpu().numpy())
        raw_out.append(raw.float().cpu().numpy())
        bar.update(len(index))
    bar.close()
    return np.concatenate(fields_out), np.concatenate(raw_out)


def refinement_of(refiner: LoadedRun, device: torch.device) -> Refinement:
    """The refinement step of a loaded refiner run, with its own sampler settings."""
    diffusion = refiner.config.diffusion
    manifest = refiner.data_manifest
    return Refinement(
        refiner.model, refiner.data_static, manifest.lower, manifest.upper, diffusion, diffusion.sampler_steps, device
    )


def sampler_description(diffusion: Any) -> str:
    """The sampler as a samples file names it: method, spacing of the noise levels, log-SNR range."""
    if diffusion.sampler_spacing == "edm":
        spacing = f"EDM noise levels, rho {diffusion.sampler_rho:g}"
    else:
        spacing = "noise levels equally spaced in log-SNR"
    gammas = f"gamma {diffusion.sampler_gamma_min:g} .. {diffusion.sampler_gamma_max:g}"
    return f"{SAMPLER_NAME}, {spacing}, {gammas}"


def sample_attrs(
    loaded: LoadedRun, steps: int, seed: int, name: str | None = None, decoder_noise: str = "none"
) -> dict[str, Any]:
    """The provenance a samples file carries as global attributes."""
    run_dir = Path(loaded.run_dir)
    generator = loaded.base or loaded
    attrs = {
        "run": str(run_dir.resolve()),
        "checkpoint_step": loaded.step,
        "space": generator.data_manifest.kind,
        "sampler": sampler_description(generator.config.diffusion),
        "steps": steps,
        "network_evaluations_per_sample": 2 * steps - 1,
        "seed": seed,
        "model": name or run_dir.name,
        "decoder": generator.vae_run.config.vae.decoder if generator.is_latent else "none",
    }
    if decoder_noise != "none":
        attrs["decoder_noise"] = f"{decoder_noise}: the VAE's residual spectrum on {DEFAULT_STATES} training states"
    if loaded.base is not None:
        refine_steps = loaded.config.diffusion.sampler_steps
        attrs |= {
            "space": "latent + data-space refiner",
            "latent_run": str(Path(loaded.base.run_dir).resolve()),
            "latent_checkpoint_step": loaded.base.step,
            "refiner_sampler": sampler_description(loaded.config.diffusion),
            "refiner_steps": refine_steps,
            "refiner_network_evaluations_per_sample": 2 * refine_steps - 1,
        }
    return attrs


def ensemble_dataset(
    loaded: LoadedRun,
    fields: np.ndarray,
    raw: np.ndarray,
    steps: int,
    seed: int,
    name: str | None = None,
    decoder_noise: str = "none",
) -> xr.Dataset:
    """Generated fields (and their values before clipping) as a samples file's ``xarray.Dataset``: on
    the run's physical grid (:attr:`LoadedRun.field_static`), with its provenance (:func:`sample_attrs`)."""
    static = loaded.field_static
    return samples_dataset(
        fields, static.mask, static.lat, static.lon, sample_attrs(loaded, steps, seed, name, decoder_noise), raw
    )
