"""hpc-seaice: distributed training of data-space and latent diffusion models of Arctic sea ice."""

__version__ = "0.1.0"
