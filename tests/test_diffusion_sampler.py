"""Heun sampler: second-order convergence on the exact Gaussian ODE, call count, the v wrapper, spacings.

The check of the default against the data's principal-component spectrum is in
tests/test_diffusion_sampler_spectrum.py."""

import math

import pytest
import torch

from hpc_seaice.config import DiffusionConfig
from hpc_seaice.diffusion.sampler import (
    DEFAULT_STEPS,
    LOG_SIGMA_STEP,
    SIGMA_MAX,
    SIGMA_MIN,
    VDenoiser,
    edm_sigmas,
    heun_sample,
    log_snr_sigmas,
    noise_range_warning,
    sample_with_config,
    sampler_sigma_range,
    sampler_sigmas,
    steps_for_range,
)
from hpc_seaice.diffusion.vparam import alpha_sigma

S = 0.5  # data standard deviation of the Gaussian toy


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact D(x; sigma) = E[x0 | x] for x0 ~ N(0, S^2), x = x0 + sigma n."""
    sig = sigma.reshape(-1, *([1] * (x.dim() - 1)))
    return x * S**2 / (S**2 + sig**2)


def exact_output(noise: torch.Tensor, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """The probability-flow ODE solution x(sigma) = x(sigma_max) sqrt((S^2 + sigma^2) / (S^2 + sigma_max^2))
    carried to sigma_min, then denoised there (what the sampler's last step returns)."""
    x_min = noise * sigma_max * math.sqrt((S**2 + sigma_min**2) / (S**2 + sigma_max**2))
    return x_min * S**2 / (S**2 + sigma_min**2)


class CountingDenoiser:
    def __init__(self, fn):
        self.fn, self.calls, self.batches = fn, 0, []

    def __call__(self, x, sigma):
        self.calls += 1
        self.batches.append(sigma.shape[0])
        return self.fn(x, sigma)


def test_edm_sigmas_end_points_and_spacing():
    s = edm_sigmas(20, 0.002, 80.0)
    assert s.shape == (21,) and s.dtype == torch.float64
    assert float(s[0]) == pytest.approx(80.0) and float(s[19]) == pytest.approx(0.002) and float(s[20]) == 0.0
    assert (s[1:] < s[:-1]).all()
    # rho = 7: the 7th roots are equally spaced
    torch.testing.assert_close(
        s[:20].pow(1 / 7).diff(), torch.full((19,), float(s[1] ** (1 / 7) - s[0] ** (1 / 7))).double()
    )
    assert edm_sigmas(1, 0.002, 80.0).tolist() == [80.0, 0.0]
    with pytest.raises(ValueError):
        edm_sigmas(0, 0.002, 80.0)


def test_log_snr_sigmas_are_equal_steps_in_log_sigma_and_the_large_rho_limit():
    s = log_snr_sigmas(30, SIGMA_MIN, SIGMA_MAX)
    assert s.shape == (31,) and s.dtype == torch.float64 and float(s[-1]) == 0.0
    assert float(s[0]) == SIGMA_MAX and float(s[29]) == SIGMA_MIN
    steps = s[:30].log().diff()
    torch.testing.assert_close(steps, torch.full((29,), -14.5 / 29, dtype=torch.float64))
    # equal steps in gamma = -2 log sigma: what the name says
    torch.testing.assert_close((-2 * s[:30].log()).diff(), torch.full((29,), 1.0, dtype=torch.float64))
    torch.testing.assert_close(edm_sigmas(30, SIGMA_MIN, SIGMA_MAX, rho=1e6), s, rtol=1e-4, atol=0)
    assert log_snr_sigmas(1, 0.002, 80.0).tolist() == [80.0, 0.0]
    torch.testing.assert_close(sampler_sigmas(12, 0.01, 10.0), log_snr_sigmas(12, 0.01, 10.0))
    torch.testing.assert_close(sampler_sigmas(12, 0.01, 10.0, "edm", 5.0), edm_sigmas(12, 0.01, 10.0, 5.0))
    with pytest.raises(ValueError, match="spacing"):
        sampler_sigmas(12, 0.01, 10.0, "karras")
    with pytest.raises(ValueError):
        log_snr_sigmas(5, 10.0, 1.0)


@pytest.mark.parametrize("steps", [1, 2, 5, 20])
def test_two_n_minus_one_denoiser_calls_on_the_whole_batch(steps):
    den = CountingDenoiser(gaussian_denoiser)
    heun_sample(den, torch.randn(7, 3, 4, 4, dtype=torch.float64), num_steps=steps)
    assert den.calls == 2 * steps - 1
    assert den.batches == [7] * den.calls


@pytest.mark.parametrize("spacing", ["log-snr", "edm"])
def test_heun_converges_at_second_order_to_the_closed_form_solution(spacing):
    noise = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = exact_output(noise, SIGMA_MIN, SIGMA_MAX)
    errors = {}
    for steps in (30, 60, 120, 240):  # 30: the default step count on the default range
        out = heun_sample(gaussian_denoiser, noise, num_steps=steps, spacing=spacing)
        errors[steps] = float((out - target).abs().max() / target.abs().max())
    assert errors[30] < 0.1
    for n in (60, 120, 240):
        ratio = errors[n // 2] / errors[n]
        # the step (in log sigma, or in t = sigma^(1/rho)) shrinks by (n - 1) / (n/2 - 1):
        # second order -> its square
        expected = ((n - 1) / (n // 2 - 1)) ** 2
        assert ratio == pytest.approx(expected, rel=0.1), (n, ratio, expected)


def test_deterministic_given_the_noise_and_final_step_is_the_denoised_estimate():
    noise = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    a = heun_sample(gaussian_denoiser, noise, num_steps=6)
    b = heun_sample(gaussian_denoiser, noise.clone(), num_steps=6)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # one step: the noise scaled by sigma_max, denoised once
    one = heun_sample(gaussian_denoiser, noise, num_steps=1, sigma_min=0.01, sigma_max=10.0)
    torch.testing.assert_close(one, noise * 10.0 * S**2 / (S**2 + 100.0))


def gaussian_v_net(z: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """The exact v-prediction for Gaussian data N(0, S^2) in VP coordinates."""
    alpha, sigma = alpha_sigma(gamma.double())
    alpha, sigma = alpha[:, None, None, None], sigma[:, None, None, None]
    x_hat = alpha * S**2 * z / (alpha**2 * S**2 + sigma**2)
    return (alpha * z - x_hat) / sigma


def test_vdenoiser_turns_the_exact_v_net_into_the_exact_ve_denoiser():
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    sigma = torch.tensor([1e-3, 0.1, 1.0, 10.0, 148.0], dtype=torch.float64)
    den = VDenoiser(gaussian_v_net)
    torch.testing.assert_close(den(x, sigma), gaussian_denoiser(x, sigma), rtol=1e-10, atol=1e-12)
    mask = torch.ones(4, 4)
    mask[0] = 0
    masked = VDenoiser(gaussian_v_net, mask=mask)(x, sigma)
    assert (masked[:, :, 0] == 0).all()
    torch.testing.assert_close(masked[:, :, 1:], gaussian_denoiser(x, sigma)[:, :, 1:])


def test_vdenoiser_feeds_the_network_the_log_snr_of_sigma():
    seen = {}

    def net(z, gamma):
        seen["gamma"] = gamma
        return torch.zeros_like(z)

    VDenoiser(net)(torch.zeros(2, 1, 2, 2), torch.tensor([math.exp(-2.5), 1.0]))
    torch.testing.assert_close(seen["gamma"], torch.tensor([5.0, 0.0]))
    assert seen["gamma"].dtype == torch.float32


def test_sampling_the_exact_gaussian_model_gives_the_data_distribution():
    noise = torch.randn(20000, 1, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    # 80 steps: the discretisation error (about 5 % in scale at 20 steps for this S) is below 0.5 %
    samples = heun_sample(VDenoiser(gaussian_v_net), noise, num_steps=80)
    assert float(samples.std()) == pytest.approx(S, rel=0.02)
    assert abs(float(samples.mean())) < 0.02


def test_sampler_sigma_range_from_the_sampling_log_snr_range():
    lo, hi = sampler_sigma_range(DiffusionConfig(sampler_gamma_min=-10.0, sampler_gamma_max=15.0))
    assert lo == pytest.approx(math.exp(-7.5)) and hi == pytest.approx(math.exp(5.0))
    assert sampler_sigma_range(DiffusionConfig()) == pytest.approx((SIGMA_MIN, SIGMA_MAX))


TOP_STD = 300.0  # std of the leading principal component of normalised 512 x 512 states (about 290)
STDS = torch.tensor([TOP_STD, 1.0, 0.05], dtype=torch.float64)


def anisotropic_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact D(x; sigma) of x0 ~ N(0, diag(STDS^2)): per direction s^2 / (s^2 + sigma^2) x."""
    return x * STDS**2 / (STDS**2 + sigma.reshape(-1, 1) ** 2)


def returned_std(cfg: DiffusionConfig, steps: int) -> torch.Tensor:
    """Std of the sampler's output per direction: for a Gaussian the sampler is linear in the noise,
    so unit noise returns output std / noise std exactly (no Monte-Carlo error)."""
    return sample_with_config(anisotropic_denoiser, torch.ones(1, 3, dtype=torch.float64), cfg, steps)[0]


def test_default_settings_return_the_top_principal_component_std():
    cfg = DiffusionConfig()
    std = returned_std(cfg, cfg.sampler_steps)
    assert float(std[0]) == pytest.approx(TOP_STD, rel=0.05)
    assert float(std[1]) == pytest.approx(1.0, rel=0.05)  # the unit-variance directions stay right
    assert float(std[2]) == pytest.approx(0.05, rel=0.05)  # and the small scales
    # the authors' 64 x 64 setting (sigma_max e^5, 20 EDM steps) narrows the top direction by half
    old = returned_std(DiffusionConfig(sampler_gamma_min=-10.0, sampler_spacing="edm"), 20)
    assert float(old[0]) < 0.5 * TOP_STD
    # the closed form without discretisation error: s sigma_max / sqrt(s^2 + sigma_max^2)
    hi = sampler_sigma_range(cfg)[1]
    assert float(returned_std(cfg, 200)[0]) == pytest.approx(TOP_STD * hi / math.hypot(TOP_STD, hi), rel=0.01)


def test_default_noise_range_is_three_pc_stds_inside_training_range():
    cfg = DiffusionConfig()
    lo, hi = sampler_sigma_range(cfg)
    assert hi >= 3 * 290.0  # 3 x the leading-PC std of the 512 x 512 states
    assert cfg.gamma_min <= cfg.sampler_gamma_min and cfg.sampler_gamma_max <= cfg.gamma_max
    assert cfg.sampler_spacing == "log-snr" and cfg.sampler_steps == DEFAULT_STEPS == 30
    assert steps_for_range(lo, hi) == DEFAULT_STEPS and LOG_SIGMA_STEP == pytest.approx(0.5)
    assert steps_for_range(lo, hi * math.e) == DEFAULT_STEPS + 2  # one more e-fold: two more 0.5 steps
    # the EDM rule: the authors' 20 steps on [e^-7.5, e^5], carried to e^7 at the same t step
    assert steps_for_range(math.exp(-7.5), math.exp(5.0), "edm") == 20
    assert steps_for_range(lo, hi, "edm") == 28
    new = edm_sigmas(28, lo, hi)[:-1].pow(1 / 7).diff().abs()
    old = edm_sigmas(20, math.exp(-7.5), math.exp(5.0))[:-1].pow(1 / 7).diff().abs()
    assert float(new.max()) <= float(old.max()) * (1 + 1e-9)
    with pytest.raises(ValueError, match="spacing"):
        steps_for_range(lo, hi, "karras")


def test_noise_range_warning():
    assert noise_range_warning(SIGMA_MAX, 290.0) is None
    assert noise_range_warning(SIGMA_MAX, None) is None
    msg = noise_range_warning(math.exp(5.0), 290.0)
    assert msg is not None and "\n" not in msg and "290" in msg and "sampler_gamma_min" in msg
    # the suggested gamma_min gives at least (and about) 3 x the std
    gamma = float(msg.split("sampler_gamma_min <= ", 1)[1].split()[0])
    assert 3 * 290.0 <= math.exp(-gamma / 2) < 1.06 * 3 * 290.0
    # and the steps that keep the step density on the wider range, for either spacing
    steps = int(msg.split("sampler_steps >= ", 1)[1].rstrip(")"))
    assert steps == steps_for_range(SIGMA_MIN, math.exp(-gamma / 2))
    wide = noise_range_warning(SIGMA_MAX, 1000.0)  # a data set wider than the default range
    assert int(wide.split("sampler_steps >= ", 1)[1].rstrip(")")) > DEFAULT_STEPS
    edm = noise_range_warning(math.exp(5.0), 290.0, spacing="edm")
    assert int(edm.split("sampler_steps >= ", 1)[1].rstrip(")")) == steps_for_range(
        SIGMA_MIN, math.exp(-gamma / 2), "edm"
    )
