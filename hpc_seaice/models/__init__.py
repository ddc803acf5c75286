"""Networks: the U-Net denoiser family (data and latent space), the VAE, censored likelihoods."""

from hpc_seaice.models.build import build_unet, build_vae, count_parameters, forward_flops, load_model_preset
from hpc_seaice.models.censored import censored_gaussian_nll, gaussian_nll
from hpc_seaice.models.unet import UNet
from hpc_seaice.models.vae import VAE

__all__ = [
    "UNet",
    "VAE",
    "build_unet",
    "build_vae",
    "censored_gaussian_nll",
    "count_parameters",
    "forward_flops",
    "gaussian_nll",
    "load_model_preset",
]
