"""A stochastic decoder for latent runs: the decoded location plus noise with the residual's spectrum.

The censored decoder's deterministic output ``clamp(mu, l, u)`` is a conditional mean: it lacks
the variance of ``x - mu`` entirely, and that variance sits at small scales. Drawing the censored
Gaussian per cell with white noise (``VAE.decode(sample=True)``) puts it back at the wrong scales
(a flat spectrum, the grid scale). Here the noise is spectrally matched instead: its 2-D power
spectrum per variable is the mean power spectrum of the VAE's residuals ``x - decode(mu(x))`` over
evenly spread training states, so each sample gets small-scale energy of the right amount at the
right wavelengths, then the bounds are applied (the censoring) and land set to 0. The residuals are
0 on land, so their spectrum carries the coast's imprint (as any spectrum of a masked field does);
on a grid with much land the masked noise then has a little more power at small scales than the
residuals (0.2-0.3 decade on the tests' 32 x 32 set, mostly land). No training,
one FFT per sample; the noise is Gaussian and independent between variables, so it restores
spectra, not the structure of leads (the learned refiner, :mod:`.refine`, is the approach that can).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from hpc_seaice.data.blocks import evenly_spaced
from hpc_seaice.data.format.static import Static
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.inference.generate import DataSpaceDecoder
from hpc_seaice.inference.refine import FieldScaler, residuals

MODES = ("none", "spectral")
DEFAULT_STATES = 32  # training states whose residual spectra are averaged


class SpectralDecoderNoise:
    """Decoded physical fields + noise with the residual's mean 2-D spectrum -> (clipped fields, raw values)."""

    def __init__(self, amplitude: Tensor, static: Static, lower: np.ndarray, upper: np.ndarray) -> None:
        """``amplitude`` [C, H, W]: sqrt of the residual's power per FFT coefficient (normalised units)."""
        device = amplitude.device
        self.amplitude = amplitude
        self.fields = FieldScaler(static, device)
        self.decode = DataSpaceDecoder(static.mean, static.std, lower, upper, static.mask, device)

    @classmethod
    @torch.no_grad()
    def fit(
        cls,
        vae: nn.Module,
        fields_path: str,
        lower: np.ndarray,
        upper: np.ndarray,
        states: int = DEFAULT_STATES,
        device: torch.device | str = "cpu",
    ) -> SpectralDecoderNoise:
        """Measure the residual spectrum of ``vae`` on ``states`` evenly spread training states of ``fields_path``."""
        data = ShardedDataset(fields_path, split="train")
        fields = FieldScaler(data.static, torch.device(device))
        ocean_share = float(fields.mask.mean())
        power = torch.zeros(data.num_channels, *data.grid, dtype=torch.float64)
        chosen = evenly_spaced(len(data), states)
        for residual in residuals(vae, fields, torch.stack([data[int(i)] for i in chosen])):
            power += torch.fft.fft2(residual.double().cpu()).abs().square().sum(dim=0)
        # the noise is masked afterwards: scale the spectrum so the ocean cells get the residual's variance
        power /= len(chosen) * max(ocean_share, 1e-6)
        height, width = data.grid
        amplitude = (power / (height * width)).sqrt().float().to(device)
        return cls(amplitude, data.static, lower, upper)

    def stationary(self, white: Tensor) -> Tensor:
        """Stationary noise with the measured 2-D power spectrum, from standard-normal ``white`` [B, C, H, W]."""
        return torch.fft.ifft2(torch.fft.fft2(white.double()) * self.amplitude.double()).real.float()

    def noise(self, white: Tensor) -> Tensor:
        """:meth:`stationary` noise, land 0 (its ocean cells have the residual's variance)."""
        return self.stationary(white) * self.fields.mask

    @torch.no_grad()
    def __call__(self, decoded: Tensor, white: Tensor) -> tuple[Tensor, Tensor]:
        return self.decode(self.fields.to_norm(decoded) + self.noise(white))
