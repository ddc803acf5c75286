"""Deterministic Heun sampler (Karras et al. 2022, Algorithm 2) and the v-network wrapper.

The probability-flow ODE is integrated in variance-exploding coordinates, x = z / alpha with
noise level sigma = exp(-gamma / 2):  dx / dsigma = (x - D(x; sigma)) / sigma,  on N noise levels
sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min, then sigma_N = 0. The last step (to
sigma = 0) is an Euler step, which returns D(x; sigma_min) exactly, the denoised estimate, so N
steps cost 2 N - 1 denoiser calls.

Two spacings of the noise levels (``diffusion.sampler_spacing``):

- ``log-snr`` (the default): equal steps in log sigma, i.e. in the log-SNR gamma = -2 log sigma.
- ``edm``: Karras et al.'s sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) -
  sigma_max^(1/rho)))^rho. With rho = 7 its steps in log sigma grow from the top to the bottom of
  the range: on [e^-7.5, e^7] in 28 steps they are 0.23 wide at sigma_max and 1.6 at sigma_min.

Why log-SNR: along a data direction of variance s^2 the ODE only bends near sigma = s (for a
Gaussian, x(sigma) is proportional to sqrt(s^2 + sigma^2)), and the normalised states have
principal-component stds from about 330 down to about 0.003 (docs/sampler.md). Equal steps in
log sigma give every direction about the same discretisation error; the EDM steps at small sigma
are so wide that with an exact Gaussian denoiser 28 of them returned 10-19 % too much std along
directions of std 0.1-0.01 (27 % at 0.003), against at most 4.2 % in every direction with equal
log-SNR steps at the same cost. The default, 30 steps (59 calls) on [e^-7.5, e^7], is within
3.6 % (``benchmarks/sampler_convergence.py``, tests/test_diffusion_sampler_spectrum.py).

Everything is batch-wise: one call of the denoiser per evaluation for the whole batch, and the
result is a deterministic function of the noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from hpc_seaice.config import DiffusionConfig

# Defaults: the sampling log-SNR range [-14, 15]. The authors' [-10, 15] (sigma_max = e^5 ~ 148,
# for 64 x 64 regional states) is too narrow on 512 x 512 pan-Arctic states, whose leading
# principal component (the seasonal mode) has a std of about 290 in normalised units: along a
# direction of data std s the sampler returns about s sigma_max / sqrt(s^2 + sigma_max^2), i.e.
# 134 instead of 300 at e^5. e^7 ~ 1097 is 3.8 x 290 and well inside the training range [-20, 20].
SIGMA_MIN = math.exp(-15.0 / 2)
SIGMA_MAX = math.exp(14.0 / 2)
PC_STD_FACTOR = 3.0  # sigma_max should be at least this many times the data's leading-PC std
SPACINGS = ("log-snr", "edm")
# The defaults of diffusion.sampler_spacing and .sampler_steps (one source: the config model):
# 30 steps equally spaced in log-SNR, within 5 % on the data's spectrum (docs/sampler.md).
DEFAULT_SPACING: str = DiffusionConfig.model_fields["sampler_spacing"].default
DEFAULT_STEPS: int = DiffusionConfig.model_fields["sampler_steps"].default
# The step of the default log-SNR schedule in log sigma (0.5 on [e^-7.5, e^7] in 30 steps):
# steps_for_range keeps it when the range is widened.
LOG_SIGMA_STEP = math.log(SIGMA_MAX / SIGMA_MIN) / (DEFAULT_STEPS - 1)
# The step density of the authors' EDM schedule: 20 steps on [e^-7.5, e^5] with rho = 7.
REFERENCE_STEPS = (20, math.exp(-15.0 / 2), math.exp(10.0 / 2))

Denoiser = Callable[[Tensor, Tensor], Tensor]


def _check_range(num_steps: int, sigma_min: float, sigma_max: float) -> None:
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")


def edm_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Noise levels sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min, then sigma_N = 0 (float64)."""
    _check_range(num_steps, sigma_min, sigma_max)
    if num_steps == 1:
        steps = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64)
        lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
        steps = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([steps, torch.zeros(1, dtype=torch.float64)])


def log_snr_sigmas(num_steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Noise levels equally spaced in log sigma (= in gamma) from sigma_max to sigma_min, then 0 (float64).

    The limit rho -> infinity of :func:`edm_sigmas`.
    """
    _check_range(num_steps, sigma_min, sigma_max)
    if num_steps == 1:
        steps = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64)
        steps = torch.exp(math.log(sigma_max) + ramp * (math.log(sigma_min) - math.log(sigma_max)))
        steps[0], steps[-1] = sigma_max, sigma_min  # exact end points
    return torch.cat([steps, torch.zeros(1, dtype=torch.float64)])


def sampler_sigmas(
    num_steps: int, sigma_min: float, sigma_max: float, spacing: str = DEFAULT_SPACING, rho: float = 7.0
) -> Tensor:
    """The N + 1 noise levels of the sampler with the given ``spacing`` (``rho`` is used by ``edm`` only)."""
    if spacing == "log-snr":
        return log_snr_sigmas(num_steps, sigma_min, sigma_max)
    if spacing == "edm":
        return edm_sigmas(num_steps, sigma_min, sigma_max, rho)
    raise ValueError(f"sampler spacing {spacing!r} is not one of {SPACINGS}")


@torch.no_grad()
def heun_sample(
    denoiser: Denoiser,
    noise: Tensor,
    num_steps: int = DEFAULT_STEPS,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = 7.0,
    progress: bool = False,
    spacing: str = DEFAULT_SPACING,
) -> Tensor:
    """Integrate the probability-flow ODE from ``noise * sigma_max`` down to the data.

    ``noise`` is standard normal [B, ...]; ``denoiser(x, sigma)`` gets the batch and sigma as a
    [B] tensor and returns D(x; sigma). Returns the final denoised estimate. The noise levels are
    :func:`sampler_sigmas` (``spacing`` ``log-snr`` or ``edm`` with ``rho``).
    """
    sigmas = sampler_sigmas(num_steps, sigma_min, sigma_max, spacing, rho).tolist()
    x = noise * sigmas[0]
    batch = noise.shape[0]

    def call(x_in: Tensor, sigma: float) -> Tensor:
        return denoiser(x_in, torch.full((batch,), sigma, dtype=noise.dtype, device=noise.device))

    for i in tqdm(range(num_steps), desc="heun", disable=not progress, leave=False):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        denoised = call(x, s_cur)
        if s_next == 0.0:
            return denoised  # Euler step to sigma = 0 lands exactly on D(x; sigma_min)
        d_cur = (x - denoised) / s_cur
        x_euler = x + (s_next - s_cur) * d_cur
        d_next = (x_euler - call(x_euler, s_next)) / s_next
        x = x + (s_next - s_cur) * 0.5 * (d_cur + d_next)
    return x  # not reached: the last sigma is 0


class VDenoiser(nn.Module):
    """Turns a v-prediction network ``net(z, gamma)`` (variance preserving) into D(x; sigma) (VE).

    With sigma_ve = exp(-gamma / 2): gamma = -2 log sigma_ve, alpha = 1 / sqrt(1 + sigma_ve^2),
    sigma_vp = sigma_ve alpha, z = alpha x, and D = x_hat = alpha z - sigma_vp v_hat. If a mask is
    given, the estimate is multiplied by it (land = 0).
    """

    def __init__(self, net: Callable[[Tensor, Tensor], Tensor], mask: Tensor | None = None) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mask", None if mask is None else mask.float(), persistent=False)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(x.shape[0])
        gamma = -2.0 * torch.log(s)
        alpha = torch.rsqrt(1.0 + s.square())
        view = (-1,) + (1,) * (x.dim() - 1)
        alpha_b = alpha.to(x.dtype).reshape(view)
        sigma_vp = (s * alpha).to(x.dtype).reshape(view)
        z = alpha_b * x
        v_hat = self.net(z, gamma.to(torch.float32 if x.dtype != torch.float64 else x.dtype))
        x_hat = alpha_b * z - sigma_vp * v_hat.to(x.dtype)
        if self.mask is not None:
            x_hat = x_hat * self.mask.to(x.dtype)
        return x_hat


def steps_for_range(sigma_min: float, sigma_max: float, spacing: str = DEFAULT_SPACING, rho: float = 7.0) -> int:
    """Heun steps that keep the default step density on another range [sigma_min, sigma_max].

    ``log-snr``: the default's step in log sigma (:data:`LOG_SIGMA_STEP`), so
    ``steps_for_range(SIGMA_MIN, SIGMA_MAX) == DEFAULT_STEPS``. ``edm``: the step in
    ``t = sigma^(1/rho)`` of the authors' 20 steps on [e^-7.5, e^5] (:data:`REFERENCE_STEPS`);
    widening the range at that step keeps the steps below the old ``sigma_max`` where they were
    (28 on [e^-7.5, e^7]).
    """
    if spacing == "log-snr":
        return 1 + math.ceil(math.log(sigma_max / sigma_min) / LOG_SIGMA_STEP - 1e-9)
    if spacing != "edm":
        raise ValueError(f"sampler spacing {spacing!r} is not one of {SPACINGS}")
    ref_n, ref_lo, ref_hi = REFERENCE_STEPS
    step = (ref_hi ** (1 / rho) - ref_lo ** (1 / rho)) / (ref_n - 1)
    return 1 + math.ceil((sigma_max ** (1 / rho) - sigma_min ** (1 / rho)) / step - 1e-9)


def noise_range_warning(
    sigma_max: float,
    pc1_std: float | None,
    sigma_min: float = SIGMA_MIN,
    spacing: str = DEFAULT_SPACING,
    rho: float = 7.0,
) -> str | None:
    """One line if ``sigma_max`` is below ``PC_STD_FACTOR`` x the data's leading-PC std, else None.

    The advice names both keys: a wider range at the same step count would thin the steps.
    """
    if pc1_std is None or not math.isfinite(pc1_std) or sigma_max >= PC_STD_FACTOR * pc1_std:
        return None
    gamma = math.floor(-20.0 * math.log(PC_STD_FACTOR * pc1_std)) / 10  # rounded down: enough noise
    steps = steps_for_range(sigma_min, math.exp(-gamma / 2), spacing, rho)
    return (
        f"warning: sampler sigma_max {sigma_max:.4g} is below {PC_STD_FACTOR:g} x the data set's leading "
        f"principal-component std {pc1_std:.4g}; samples will be too narrow along it (set "
        f"diffusion.sampler_gamma_min <= {gamma:g} and diffusion.sampler_steps >= {steps})"
    )


def sampler_sigma_range(cfg: DiffusionConfig) -> tuple[float, float]:
    """(sigma_min, sigma_max) = exp(-gamma / 2) at the ends of the sampling log-SNR range."""
    if not cfg.sampler_gamma_max > cfg.sampler_gamma_min:
        raise ValueError("diffusion.sampler_gamma_max must exceed diffusion.sampler_gamma_min")
    return math.exp(-cfg.sampler_gamma_max / 2), math.exp(-cfg.sampler_gamma_min / 2)


def sample_with_config(denoiser: Denoiser, noise: Tensor, cfg: DiffusionConfig, steps: int) -> Tensor:
    """:func:`heun_sample` with a run's noise range, rho and spacing (``cfg``), in ``steps`` steps."""
    sigma_min, sigma_max = sampler_sigma_range(cfg)
    return heun_sample(
        denoiser,
        noise,
        num_steps=steps,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        rho=cfg.sampler_rho,
        spacing=cfg.sampler_spacing,
    )
