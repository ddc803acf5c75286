"""What latent diffusion needs beyond the cached latent means: the coast and the posterior spread.

- The latent denoiser cannot see land in the latents themselves; it gets the ocean fraction of
  each latent cell (the block mean of the fields' land-sea mask) as an input channel. The latent
  data set records the fields data set it was encoded from, whose ``static.h5`` has the mask.
- The VAE's posterior is q(z | x) = N(mu, sigma^2); ``encode`` stores mu as the latent and
  log sigma^2 beside it. Training on means learns the distribution of mu; training on posterior
  samples z = mu + sigma * eps learns the distribution the decoder was trained to decode (as in
  Rombach et al. 2022). ``diffusion.latent_posterior`` chooses; the noise eps is seeded from the
  sample's global stream position like every other training noise, so 1 and N ranks and a
  resumed run see the same z.
"""

from __future__ import annotations

import numpy as np
import torch

from hpc_seaice.data.dataset import GlobalBatchSampler, ShardedDataset


class PosteriorNoise:
    """sigma * eps for the training samples at given global stream positions (standardised units).

    The trainer's data order maps a stream position to a sample index (``GlobalBatchSampler``);
    this maps the same positions to the same samples and reads their stored log-variance.
    """

    def __init__(self, data_path: str, split: str, global_batch: int, seed: int) -> None:
        self.dataset = ShardedDataset(data_path, split=split)
        if self.dataset.manifest.kind != "latent":
            raise ValueError("posterior samples exist only for latent data sets")
        self.order = GlobalBatchSampler(len(self.dataset), global_batch=global_batch, rank=0, world_size=1, seed=seed)
        std = np.asarray(self.dataset.static.std, dtype=np.float32)
        self.inv_std = torch.as_tensor(1.0 / std).view(-1, 1, 1)

    def sigma(self, positions: torch.Tensor) -> torch.Tensor:
        """Posterior standard deviations [B, C, h, w] of the samples at ``positions``, / latent std."""
        index = self.order.indices(positions.cpu().numpy())
        logvar = torch.as_tensor(np.stack([self.dataset.logvar(int(i)) for i in index]), dtype=torch.float32)
        return torch.exp(0.5 * logvar) * self.inv_std
