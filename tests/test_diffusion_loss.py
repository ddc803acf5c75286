"""The diffusion loss, and end to end: a small denoiser trained on a 2-D toy learns and samples it."""

import pytest
import torch
from torch import nn

from hpc_seaice.config import DiffusionConfig
from hpc_seaice.diffusion import (
    EMA,
    AdaptiveSchedule,
    CosineSchedule,
    VDenoiser,
    alpha_sigma,
    diffusion_loss,
    heun_sample,
    sampler_sigma_range,
    stratified_uniform,
)
from hpc_seaice.models.layers import sinusoidal_embedding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Affine(nn.Module):
    """v_hat = a * z + b * gamma: a differentiable stand-in with a known output."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.3))
        self.b = nn.Parameter(torch.tensor(-0.1))

    def forward(self, z, gamma):
        return self.a * z + self.b * gamma.reshape(-1, 1, 1, 1)


def test_loss_matches_the_formula_with_mask_weighting_and_importance():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    eps = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    gamma = torch.tensor([-4.0, 0.5, 6.0], dtype=torch.float64)
    mask = torch.ones(4, 4)
    mask[:, :2] = 0
    sched = CosineSchedule(-20.0, 20.0)
    net = Affine().double()
    loss, per_sample = diffusion_loss(net, x, mask, gamma, eps, sched)

    alpha, sigma = (t.reshape(-1, 1, 1, 1) for t in alpha_sigma(gamma))
    z = alpha * x + sigma * eps
    eps_hat = sigma * z + alpha * net(z, gamma)  # from v_hat
    err = ((eps - eps_hat) ** 2)[:, :, :, 2:].flatten(1).mean(1)  # ocean = right half
    expected_per = torch.exp(-gamma / 2) * err
    torch.testing.assert_close(per_sample.double(), expected_per, rtol=1e-6, atol=0)
    expected = 0.5 * (expected_per / sched.density(gamma)).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=0)
    assert not per_sample.requires_grad and loss.requires_grad
    loss.backward()
    assert net.a.grad is not None and torch.isfinite(net.a.grad)


def test_loss_without_mask_is_the_plain_mean():
    x, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    gamma = torch.tensor([0.0, 1.0])
    sched = CosineSchedule(-20.0, 20.0)
    a, per_a = diffusion_loss(Affine(), x, None, gamma, eps, sched)
    b, per_b = diffusion_loss(Affine(), x, torch.ones(4, 4), gamma, eps, sched)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(per_a, per_b)


# --- a small denoiser on a 2-D toy distribution ------------------------------------------------

CENTERS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
SPREAD = 0.05  # each blob is N(center, SPREAD^2 I)


def toy_data(n: int, gen: torch.Generator) -> torch.Tensor:
    """Four tight blobs on the unit circle, as [n, 2, 1, 1] "images" of two channels."""
    idx = torch.randint(len(CENTERS), (n,), generator=gen)
    return (CENTERS[idx] + SPREAD * torch.randn(n, 2, generator=gen))[:, :, None, None]


class ToyNet(nn.Module):
    """MLP v-network on [B, 2, 1, 1] inputs, conditioned like the U-Net (normalised log-SNR)."""

    def __init__(self, width: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 + 32 + 1, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, 2),
        )

    def forward(self, z, gamma):
        t = (gamma + 20.0) / 40.0 * 1000.0
        h = torch.cat([z.flatten(1), sinusoidal_embedding(t, 32), gamma[:, None] / 20.0], dim=1)
        return self.net(h).reshape(z.shape)


class OptimalToyNet(nn.Module):
    """The exact v-prediction for the Gaussian mixture (posterior over blobs in closed form)."""

    def forward(self, z, gamma):
        alpha, sigma = (t[:, None, None] for t in alpha_sigma(gamma.double()))
        zz, c = z.flatten(1).double()[:, None, :], CENTERS.double()[None]
        var = alpha**2 * SPREAD**2 + sigma**2
        resp = torch.softmax(-((zz - alpha * c) ** 2).sum(-1, keepdim=True) / (2 * var), dim=1)
        x_k = c + alpha * SPREAD**2 / var * (zz - alpha * c)
        x_hat = (resp * x_k).sum(1)
        v = (alpha[:, 0] * zz[:, 0] - x_hat) / sigma[:, 0]
        return v.reshape(z.shape).to(z.dtype)


def nearest_center_distance(samples: torch.Tensor) -> torch.Tensor:
    return torch.cdist(samples.flatten(1).float(), CENTERS).min(dim=1).values


def test_small_denoiser_learns_a_2d_toy_and_its_samples_land_on_the_data():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = ToyNet()
    ema = EMA(net, decay=0.95)
    schedule = AdaptiveSchedule(-20.0, 20.0, num_bins=100, decay=0.99)
    # fixed evaluation: the same data, noise and gammas (cosine density) before and after
    reference = CosineSchedule(-20.0, 20.0)
    x_eval, eps_eval = toy_data(4096, gen), torch.randn(4096, 2, 1, 1, generator=gen)
    g_eval = reference.gamma(stratified_uniform(123, range(4096), 4096)).float()

    def evaluate(model) -> float:
        with torch.no_grad():
            return diffusion_loss(model, x_eval, None, g_eval, eps_eval, reference)[0].item()

    before, optimum = evaluate(net), evaluate(OptimalToyNet())
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    batch = 256
    for step in range(400):
        x, eps = toy_data(batch, gen), torch.randn(batch, 2, 1, 1, generator=gen)
        gamma = schedule.gamma(stratified_uniform(step, range(step * batch, (step + 1) * batch), batch)).float()
        loss, per_sample = diffusion_loss(net, x, None, gamma, eps, schedule)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.update(gamma, per_sample)
        ema.update(net)
    after = evaluate(net)
    # the untrained net sits near the trivial v_hat = 0 (about 1.18); the optimum is about 0.79
    assert after < before - 0.5 * (before - optimum), (before, after, optimum)
    assert after < 0.85 * before
    # the schedule learned where the weighted loss is: more mass near gamma ~ 0 than at the ends
    probs = schedule.probabilities()
    assert probs[45:60].sum() > 5 * probs[:15].sum() and probs[45:60].sum() > 5 * probs[85:].sum()

    lo, hi = sampler_sigma_range(DiffusionConfig())
    noise = torch.randn(1024, 2, 1, 1, generator=torch.Generator().manual_seed(5))
    near = {}
    for name, model in (("trained", ema.module), ("untrained", ToyNet()), ("optimal", OptimalToyNet())):
        samples = heun_sample(VDenoiser(model.eval()), noise, num_steps=20, sigma_min=lo, sigma_max=hi)
        near[name] = float((nearest_center_distance(samples) < 0.25).float().mean())
    assert near["optimal"] > 0.95  # the sampler with the exact model reproduces the blobs
    assert near["untrained"] < 0.2
    assert near["trained"] > 0.6, near
