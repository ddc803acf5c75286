"""What latent diffusion needs beyond the cached latent means: the coast and the posterior spread.

- The latent denoiser cannot see land in the latents themselves; it gets the ocean fraction of
  each latent cell (the block mean of the fields' land-sea mask) as an input channel. The latent
  data set records the fields data set it was encoded from, whose ``static.h5`` has the mask.
- The VAE's posterior is q(z | x) = N(mu, sigma^2); ``encode`` stores mu as the latent and
  log sigma^2 beside it. Training on means learns the distribution of mu; training on posterior
  samples z = mu + sigma * eps learns the distribution the decoder was trained to decode (as in
  Rombach et al. 2022). ``diffusion.latent_posterior`` chooses; logvar arrives with the batch
  (the data set reads it beside the mean, in the loader's workers) and sigma is computed on the
  training device; the noise eps is seeded from the
  sample's global stream position like every other training noise, so 1 and N ranks and a
  resumed run see the same z.
"""

from __future__ import annotations

from hpc_seaice.config import ExperimentConfig


def trains_on_posterior(cfg: ExperimentConfig, kind: str) -> bool:
    """Whether a run trains on posterior samples z = mu + sigma * eps of a ``kind`` data set.

    Then its training batches are read with ``ShardedDataset(posterior=True)``: [2C, h, w] per
    sample, the standardised mean and the stored log-variance, both from the same batch buffers.
    """
    return cfg.stage == "diffusion" and kind == "latent" and cfg.diffusion.latent_posterior == "sample"
