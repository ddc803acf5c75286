"""The notebook API: open a trained diffusion run and sample it into an ``xarray.Dataset``.

    import hpc_seaice as hs
    run = hs.open_run("demo/runs/diffusion-ldm-censored")
    ds = run.sample(8, steps=20, seed=0)   # the CF layout of `hpc-seaice sample`, in memory

Sample ``i`` of ``run.sample(n, seed=s)`` equals sample ``i`` of ``hpc-seaice sample --seed s``.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from hpc_seaice.inference.ensemble import (
    check_sample_memory,
    check_sampling_args,
    ensemble_dataset,
    generate_ensemble,
    open_diffusion_run,
    resolve_device,
)


class Run:
    """A trained diffusion run (data space or latent), its EMA weights loaded for sampling."""

    def __init__(self, run_dir: str | Path, checkpoint: str | int = "latest", device: str | None = None) -> None:
        self.device = resolve_device(device)
        self.loaded = open_diffusion_run(run_dir, checkpoint, self.device, warn_as="hpc_seaice")

    @property
    def step(self) -> int:
        return self.loaded.step

    def __repr__(self) -> str:
        space = f"{self.loaded.data_manifest.kind} space"
        if self.loaded.base is not None:  # a refiner: its samples come from its latent run, then the residual
            space = f"latent space + refiner of {str(self.loaded.base.run_dir)!r}"
        return f"Run({str(self.loaded.run_dir)!r}, step {self.step}, {space}, {self.device.type})"

    def sample(
        self,
        n: int,
        steps: int | None = None,
        seed: int = 0,
        batch_size: int = 8,
        progress: bool = True,
        decoder_noise: str = "none",
    ) -> xr.Dataset:
        """``n`` generated states; ``steps`` defaults to the run's ``diffusion.sampler_steps`` (a
        refiner run's: its latent run's; the refiner itself takes its own). ``decoder_noise="spectral"``
        (latent runs): the decoded field plus noise with the VAE's residual spectrum (docs/refiner.md).

        A bad argument raises :class:`~hpc_seaice.inference.ensemble.SamplingArgumentError` (a ValueError).
        """
        check_sampling_args(n, steps, batch_size, seed)
        check_sample_memory(n, (5, *self.loaded.field_static.mask.shape), "n")
        steps = steps or self.loaded.sampler_steps
        fields, raw = generate_ensemble(
            self.loaded, range(n), seed, steps, batch_size, self.device, progress, decoder_noise
        )
        return ensemble_dataset(self.loaded, fields, raw, steps, seed, decoder_noise=decoder_noise)


def open_run(run_dir: str | Path, checkpoint: str | int = "latest", device: str | None = None) -> Run:
    """Open a diffusion run folder (``checkpoint``: ``latest``, a step or a ``step_N`` folder name)."""
    return Run(run_dir, checkpoint, device)
