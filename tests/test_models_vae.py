"""The VAE: geometry, units, bounds and clipping, latent statistics, loss and a one-batch overfit."""

import math

import pytest
import torch

from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.variables import BOUNDS, VARIABLES
from hpc_seaice.models.build import build_vae, load_model_preset
from hpc_seaice.models.censored import censored_gaussian_nll, gaussian_nll
from hpc_seaice.models.vae import VAE

MEAN = [1.0, 0.5, 0.4, 0.0, -0.01]
STD = [1.0, 0.45, 0.4, 0.06, 0.07]
LOWER = [BOUNDS[v][0] for v in VARIABLES]
UPPER = [BOUNDS[v][1] for v in VARIABLES]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_vae(**overrides) -> VAE:
    cfg = config_from_dict({"vae": {"preset": "tiny-vae", **overrides}}).vae
    return build_vae(cfg, data_mean=MEAN, data_std=STD, lower=LOWER, upper=UPPER)


def synthetic_batch(batch: int = 4, side: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Physical fields with exact 0/1 plateaus (open water, pack ice) and a land corner."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    fields = []
    for _ in range(batch):
        edge = 0.3 + 0.4 * torch.rand(1, generator=gen)
        sic = ((xx - edge) * 4 + 0.5).clamp(0.0, 1.0)  # 0 left, 1 right, a ramp in between
        sit = (sic * (1.0 + yy)).clamp_min(0.0)
        damage = (sic * torch.rand(1, generator=gen) * 2 * yy).clamp(0.0, 1.0)
        siu = 0.05 * torch.sin(6 * yy + edge) * sic
        siv = 0.05 * torch.cos(5 * xx) * sic
        fields.append(torch.stack([sit, sic, damage, siu, siv]))
    mask = torch.ones(side, side)
    mask[: side // 4, : side // 4] = 0.0
    return torch.stack(fields), mask


def test_latent_shape_and_encode_decode_shapes():
    vae = make_vae()
    assert vae.latent_shape(64, 32) == (4, 8, 4)
    with pytest.raises(ValueError, match="divisible"):
        vae.latent_shape(60, 64)
    x = torch.randn(2, 5, 64, 32)
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 8, 4)
    mu, log_sigma = vae.decode_params(mean)
    assert mu.shape == x.shape and log_sigma.shape == (5,)
    torch.testing.assert_close(log_sigma.exp(), torch.full((5,), 0.5))
    with pytest.raises(ValueError):
        vae.encode(torch.randn(2, 5, 36, 32))


def test_paper_vae_maps_512_to_16x64x64():
    cfg = load_model_preset("paper-vae")
    with torch.device("meta"):
        vae = VAE(cfg, data_mean=MEAN, data_std=STD, lower=LOWER, upper=UPPER)
        mean, _ = vae.encode(torch.zeros(1, 5, 512, 512))
        mu, _ = vae.decode_params(mean)
    assert tuple(mean.shape) == (1, 16, 64, 64) and tuple(mu.shape) == (1, 5, 512, 512)


def test_normalisation_round_trip_and_normalised_bounds():
    vae = make_vae()
    phys, _ = synthetic_batch()
    torch.testing.assert_close(vae.denormalize(vae.normalize(phys)), phys, atol=1e-6, rtol=1e-6)
    lo, up = vae.normalized_bounds()
    torch.testing.assert_close(lo[:3], torch.tensor([(0 - 1.0) / 1.0, -0.5 / 0.45, -0.4 / 0.4]))
    assert math.isinf(up[0]) and up[0] > 0 and math.isinf(lo[3]) and lo[3] < 0
    torch.testing.assert_close(up[1:3], torch.tensor([0.5 / 0.45, 0.6 / 0.4]))


def test_decode_clips_to_bounds_sets_land_to_zero_and_samples_stay_in_bounds():
    vae = make_vae()
    with torch.no_grad():
        vae.decoder.conv_out.bias.copy_(torch.tensor([-5.0, 5.0, -5.0, 3.0, -3.0]))  # mu far beyond
        vae.log_sigma.fill_(math.log(2.0))
    _, mask = synthetic_batch()
    z = torch.randn(3, 4, 4, 4)
    out = vae.decode(z, mask=mask)
    assert out.shape == (3, 5, 32, 32)
    land = mask == 0
    assert (out[:, :, land] == 0).all()
    ocean = out[:, :, ~land]
    assert (ocean[:, 0] == 0).all() and (ocean[:, 1] == 1).all() and (ocean[:, 2] == 0).all()
    assert ocean[:, 3].mean() > 0.1 and ocean[:, 3].std() > 0  # velocity: unbounded, not clipped
    gen = torch.Generator().manual_seed(1)
    sample = vae.decode(z, mask=mask, sample=True, generator=gen)
    lower, upper = torch.tensor(LOWER)[None, :, None, None], torch.tensor(UPPER)[None, :, None, None]
    assert ((sample >= lower) & (sample <= upper)).all()
    assert not torch.equal(sample, out)
    again = vae.decode(z, mask=mask, sample=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(sample, again)


def test_units_and_bounds_are_saved_with_the_model():
    vae = make_vae()
    other = make_vae()
    with torch.no_grad():
        vae.data_std.mul_(2.0)
    other.load_state_dict(vae.state_dict())
    torch.testing.assert_close(other.data_std, vae.data_std)
    for key in ("data_mean", "data_std", "lower", "upper", "log_sigma"):
        assert key in vae.state_dict()
    legacy = {**vae.state_dict(), "latent_mean": torch.zeros(4), "latent_std": torch.ones(4)}
    other.load_state_dict(legacy)  # checkpoints that still carry the old latent statistics load


@pytest.mark.parametrize("decoder", ["censored", "gaussian"])
def test_loss_is_the_masked_nll_plus_beta_kl(decoder):
    vae = make_vae(decoder=decoder, beta=0.5)
    phys, mask = synthetic_batch(batch=2)
    x = vae.normalize(phys) * mask
    eps = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    out = vae.loss(x, mask, eps)
    # recompute independently
    mean, logvar = vae.encode(x)
    mu, log_sigma = vae.decode_params(mean + (0.5 * logvar).exp() * eps)
    sigma = log_sigma.exp()[None, :, None, None]
    if decoder == "censored":
        lo, up = vae.normalized_bounds()
        nll = censored_gaussian_nll(x, mu, sigma, lo[None, :, None, None], up[None, :, None, None], atol=1e-5)
    else:
        nll = gaussian_nll(x, mu, sigma)
    ocean = mask.bool().expand_as(nll)
    expected_nll = nll[ocean].mean()
    expected_kl = (0.5 * (mean**2 + logvar.exp() - 1 - logvar)).mean()
    torch.testing.assert_close(out["nll"], expected_nll)
    torch.testing.assert_close(out["kl"], expected_kl)
    torch.testing.assert_close(out["loss"], expected_nll + 0.5 * expected_kl)
    # the mask also works per sample, [B, 1, H, W]
    out_b = vae.loss(x, mask[None, None].expand(2, 1, -1, -1), eps)
    torch.testing.assert_close(out_b["loss"], out["loss"])
    with pytest.raises(ValueError, match="eps"):
        vae.loss(x, mask, torch.randn(2, 4, 8, 8))


def test_censored_decoder_treats_exact_bounds_as_censored_after_normalisation():
    vae = make_vae()
    phys, mask = synthetic_batch(batch=1)
    x = vae.normalize(phys)
    lo, _ = vae.normalized_bounds()
    at_zero = phys[:, 1] == 0  # open water, sic exactly 0
    assert at_zero.any()
    mu = torch.full_like(x, -10.0)  # mu far below every lower bound: censored NLL ~ 0 there
    nll = vae.reconstruction_nll(x, mu, vae.log_sigma)
    assert nll[:, 1][at_zero].max() < 1e-6
    assert x[:, 1][at_zero].sub(lo[1]).abs().max() < 1e-5


@pytest.mark.parametrize("decoder", ["censored", "gaussian"])
def test_vae_overfits_one_batch(decoder):
    torch.manual_seed(0)
    vae = make_vae(decoder=decoder)
    phys, mask = synthetic_batch(batch=4)
    x = vae.normalize(phys) * mask
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        eps = torch.randn(4, 4, 4, 4, generator=gen)
        out = vae.loss(x, mask, eps)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < first - 0.7, (first, last)
    # the deterministic reconstruction approaches the data in physical units
    with torch.no_grad():
        mean, _ = vae.encode(x)
        recon = vae.decode(mean, mask=mask)
    rmse_sic = (recon[:, 1] - phys[:, 1] * mask).square().mean().sqrt()
    assert rmse_sic < 0.25


def test_channels_last_and_compile_options():
    ref = make_vae()
    cl = make_vae(channels_last=True)
    cl.load_state_dict(ref.state_dict())
    assert cl.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    phys, mask = synthetic_batch(batch=2)
    x = ref.normalize(phys) * mask
    eps = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(cl.loss(x, mask, eps)["loss"], ref.loss(x, mask, eps)["loss"], rtol=1e-4, atol=1e-5)
    compiled = make_vae(compile=True)  # encode/decode are methods: the two networks are compiled
    assert compiled.encoder._compiled_call_impl is not None and compiled.decoder._compiled_call_impl is not None
    assert set(compiled.state_dict()) == set(ref.state_dict())
