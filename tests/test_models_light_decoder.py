"""The light VAE decoder: geometry, the sub-pixel (PixelShuffle) path, its FLOP budget, the mask input."""

import pytest
import torch
from helpers import NEUTRAL_VAE_STATS
from torch import nn

from hpc_seaice.config import config_from_dict
from hpc_seaice.errors import UserError
from hpc_seaice.models.build import build_vae, load_model_preset
from hpc_seaice.models.describe import describe
from hpc_seaice.models.light_decoder import LightDecoder, SubPixelUp
from hpc_seaice.models.vae import VAE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def light_vae(**overrides) -> VAE:
    cfg = config_from_dict({"vae": {"preset": "tiny-vae", "decoder_arch": "light", **overrides}}).vae
    return build_vae(cfg, **NEUTRAL_VAE_STATS)


def test_light_decoder_maps_the_latent_back_to_the_grid():
    torch.manual_seed(0)
    vae = light_vae(light_channels=[16, 8], refine_channels=4)
    assert isinstance(vae.decoder, LightDecoder)
    x = torch.randn(2, 5, 32, 48)
    mean, _ = vae.encode(x)
    mu, log_sigma = vae.decode_params(mean)
    assert mean.shape == (2, 4, 4, 6) and mu.shape == x.shape and log_sigma.shape == (5,)
    shuffles = [m for m in vae.decoder.modules() if isinstance(m, nn.PixelShuffle)]
    assert [s.upscale_factor for s in shuffles] == [2, 4]  # 2x to the next level, then 4x to the full grid


def test_paper_vae_uses_the_light_decoder_at_paper_geometry():
    cfg = load_model_preset("paper-vae")
    assert cfg.decoder_arch == "light"
    with torch.device("meta"):
        vae = VAE(cfg, **NEUTRAL_VAE_STATS)
        mu, _ = vae.decode_params(torch.zeros(1, 16, 64, 64))
    assert tuple(mu.shape) == (1, 5, 512, 512)


def conv_flops_by_hooks(module: nn.Module, z: torch.Tensor) -> int:
    """2 x C_in / groups x C_out x k_h x k_w per output cell of every convolution (forward hooks)."""
    total = 0

    def hook(conv, _inputs, out):
        nonlocal total
        kh, kw = conv.kernel_size
        total += 2 * conv.in_channels // conv.groups * kh * kw * out.numel()

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        module(z)
    for h in handles:
        h.remove()
    return total


def test_paper_light_decoder_costs_at_most_15_gflop_per_sample():
    info = describe("paper-vae")
    assert info["decoder_arch"] == "light" and info["decoder_gflops"] <= 15.0
    with torch.device("meta"):
        cfg = load_model_preset("paper-vae")
        dec = LightDecoder(cfg)
        independent = conv_flops_by_hooks(dec, torch.zeros(1, 16, 64, 64))
    assert abs(independent / 1e9 - info["decoder_gflops"]) < 0.01 * info["decoder_gflops"]
    cfg.decoder_arch = "conv"
    cfg.mask_channel = False  # the mask's one extra input channel changes the mirror's cost by < 1 %
    with torch.device("meta"):
        mirror = conv_flops_by_hooks(VAE(cfg, **NEUTRAL_VAE_STATS).decoder, torch.zeros(1, 16, 64, 64))
    assert mirror / 1e9 > 5 * info["decoder_gflops"]  # the mirror decoder of the same preset costs > 5x more


def test_sub_pixel_up_is_a_conv_then_a_pixel_shuffle():
    torch.manual_seed(1)
    up = SubPixelUp(3, 2, 4)
    x = torch.randn(2, 3, 5, 7)
    y = up(x)
    c = up.conv(x)  # [2, 2 * 16, 5, 7]
    # Independent rearrangement: out[b, k, 4 i + p, 4 j + q] = conv[b, 16 k + 4 p + q, i, j].
    expected = c.view(2, 2, 4, 4, 5, 7).permute(0, 1, 4, 2, 5, 3).reshape(2, 2, 20, 28)
    assert y.shape == (2, 2, 20, 28)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    # ICNR initialisation: the 16 sub-pixels of each coarse cell start equal (no checkerboard).
    blocks = y.view(2, 2, 5, 4, 7, 4)
    torch.testing.assert_close(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks), rtol=0, atol=0)
    with torch.no_grad():
        up.conv.weight.add_(torch.randn_like(up.conv.weight))
    blocks = up(x).view(2, 2, 5, 4, 7, 4)
    assert not torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))


def test_refinement_starts_as_identity_and_sees_the_land_mask():
    torch.manual_seed(2)
    vae = light_vae(light_channels=[16, 8], refine_channels=4)
    dec = vae.decoder
    z = torch.randn(1, 4, 4, 4)
    mask = torch.zeros(32, 32)
    mask[:, :16] = 1.0
    with torch.no_grad():
        plain = dec.head(torch.nn.functional.silu(dec.norm_out(dec.fine(dec.up(dec.coarse(dec.conv_in(z)))))))
        torch.testing.assert_close(dec(z), plain, rtol=0, atol=0)  # zero-initialised residual
        dec.refine.conv2.weight.normal_()
        assert not torch.allclose(dec(z, mask), dec(z))  # the mask reaches the output
        torch.testing.assert_close(dec(z, torch.ones(32, 32)), dec(z))  # no mask = all ocean
        assert dec(z, mask[None, None]).shape == (1, 5, 32, 32)
    assert light_vae(refine_channels=0).decoder.refine is None


def test_unknown_decoder_arch_and_bad_widths_are_refused():
    with pytest.raises(UserError, match="vae.decoder_arch"):  # the config refuses it, naming the key
        light_vae(decoder_arch="deconv")
    with pytest.raises(ValueError, match="light_channels"):
        light_vae(light_channels=[8])


def test_light_vae_learns_one_batch():
    torch.manual_seed(3)
    vae = light_vae(light_channels=[16, 8], refine_channels=4)
    x = torch.randn(2, 5, 32, 32)
    mask = torch.ones(32, 32)
    eps = torch.zeros(2, 4, 4, 4)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = vae.loss(x, mask, eps)["loss"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.05
