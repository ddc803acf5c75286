"""Diffusion core: VP process in log-SNR with v-prediction, noise schedules, loss, Heun sampler, EMA.

Pure functions where possible; nothing here knows about data sets, ranks or checkpoints.
"""

from hpc_seaice.diffusion.ema import EMA
from hpc_seaice.diffusion.loss import diffusion_loss, loss_weight, masked_mean_per_sample
from hpc_seaice.diffusion.sampler import VDenoiser, edm_sigmas, heun_sample, sampler_sigma_range
from hpc_seaice.diffusion.schedule import (
    AdaptiveSchedule,
    CosineSchedule,
    Schedule,
    build_schedule,
    stratified_uniform,
)
from hpc_seaice.diffusion.vparam import alpha_sigma, denoise_from_v, diffuse, v_target

__all__ = [
    "EMA",
    "AdaptiveSchedule",
    "CosineSchedule",
    "Schedule",
    "VDenoiser",
    "alpha_sigma",
    "build_schedule",
    "denoise_from_v",
    "diffuse",
    "diffusion_loss",
    "edm_sigmas",
    "heun_sample",
    "loss_weight",
    "masked_mean_per_sample",
    "sampler_sigma_range",
    "stratified_uniform",
    "v_target",
]
