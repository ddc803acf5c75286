"""Referee checks of the land-aware networks: no checkerboard from the up-sampling (FFT), the
land mask reaching the light decoder's refinement through ``VAE.decode_params``, and bad values
of the new VAE keys refused in one line naming the key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import NEUTRAL_VAE_STATS
from torch import nn

from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.errors import UserError
from hpc_seaice.models.build import build_stage_model, build_vae
from hpc_seaice.models.layers import GridPosition, upsample_layer
from hpc_seaice.models.unet import UNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """O(1) random weights everywhere except the (zero-initialised) position projection, so
    every branch of the network contributes, as after training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, GridPosition):
                continue
            for pname, p in module.named_parameters(recurse=False):
                if "position" in name:
                    continue
                scale = 1.0 / max(1, p[0].numel()) ** 0.5 if p.dim() > 1 else 0.3
                p.copy_(torch.randn(p.shape, generator=gen) * scale + (1.0 if pname == "gamma" else 0.0))
    return model


def nyquist_fraction(field: np.ndarray) -> float:
    """Share of the (mean-removed) power of a 2-D field on the Nyquist row and column of its DFT:
    a 2-cell periodic pattern puts its power there, a smooth or constant field puts none."""
    f = np.fft.fft2(field - field.mean())
    power = np.abs(f) ** 2
    n, m = field.shape
    nyq = power[n // 2, :].sum() + power[:, m // 2].sum() - power[n // 2, m // 2]
    return float(nyq / max(power.sum(), 1e-30))


@pytest.mark.parametrize("kind", ["nearest", "transposed"])
def test_up_sampling_impulse_response_has_no_nyquist_power(kind):
    """Nearest copy = zero insertion then a 2-cell box, whose transfer function 1 + e^{-i pi} is
    zero at the Nyquist frequency; a convolution after it cannot bring that power back. The
    stride-2 transposed convolution puts its own weights on each cell of a 2x2 block instead."""
    torch.manual_seed(0)
    layer = randomize(upsample_layer(4, 3, kind), seed=1)
    with torch.no_grad():  # the impulse response of the linear map: no biases
        for module in layer.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    x = torch.zeros(1, 4, 16, 16)
    x[0, :, 8, 8] = torch.randn(4)
    with torch.no_grad():
        out = layer(x)[0].numpy()  # the response lies well inside the 32 x 32 grid: no border
    fractions = [nyquist_fraction(out[c]) for c in range(out.shape[0])]
    if kind == "nearest":
        assert max(fractions) < 1e-10
    else:
        assert min(fractions) > 1e-3  # the check sees the artefact where there is one


@pytest.mark.parametrize("kind", ["nearest", "transposed"])
def test_whole_unet_maps_a_constant_field_to_a_field_without_checkerboard(kind):
    """The full denoiser (random weights, all-ocean mask) on a constant input: away from the
    zero-padded border its output has no 2-cell periodic pattern with nearest up-sampling."""
    cfg = config_from_dict(
        {"unet": {"preset": "tiny-unet", "upsample": kind, "attention_max_side": 32, "mask_channel": True}}
    ).unet
    net = randomize(UNet(cfg), seed=2).eval()
    x = torch.full((1, 5, 64, 64), 0.4)
    with torch.no_grad():
        out = net(x, torch.tensor([1.5]))[0].numpy()
    interior = out[:, 16:48, 16:48]
    fractions = [nyquist_fraction(interior[c]) for c in range(interior.shape[0])]
    spread = float(np.abs(interior - interior.mean(axis=(1, 2), keepdims=True)).max())
    if kind == "nearest":
        assert spread < 1e-4 or max(fractions) < 1e-6
    else:
        assert max(fractions) > 0.1


def test_conv_vae_decoder_maps_a_constant_latent_to_a_field_without_checkerboard():
    cfg = config_from_dict({"vae": {"preset": "tiny-vae", "mask_channel": True}}).vae
    vae = build_vae(cfg, **NEUTRAL_VAE_STATS)
    randomize(vae.decoder, seed=3)
    with torch.no_grad():
        mu, _ = vae.decode_params(torch.full((1, 4, 16, 16), 0.3))
    interior = mu[0, :, 56:72, 56:72].numpy()  # 128 x 128 output, border effects reach 46 cells in
    spread = float(np.abs(interior - interior.mean(axis=(1, 2), keepdims=True)).max())
    assert spread < 1e-4


def light_refinement(vae, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The light decoder's output computed by hand from its layers: head output, then
    x + conv2(silu(conv1([x, mask]))) at full resolution."""
    dec = vae.decoder
    h = dec.fine(dec.up.shuffle(dec.up.conv(dec.coarse(dec.conv_in(z)))))
    x = dec.head(F.silu(dec.norm_out(h)))
    m = mask[None, None].expand(x.shape[0], 1, *x.shape[-2:])
    r = dec.refine
    hidden = F.silu(F.conv2d(torch.cat([x, m], 1), r.conv1.weight, r.conv1.bias, padding=1))
    return x + F.conv2d(hidden, r.conv2.weight, r.conv2.bias, padding=1)


def test_the_land_mask_reaches_the_light_refinement_through_decode_params():
    cfg = config_from_dict(
        {"vae": {"preset": "tiny-vae", "decoder_arch": "light", "light_channels": [16, 8], "refine_channels": 4}}
    ).vae
    torch.manual_seed(4)
    vae = build_vae(cfg, **NEUTRAL_VAE_STATS)
    with torch.no_grad():
        vae.decoder.refine.conv2.weight.normal_()  # zero-initialised: make the refinement act
    coast = torch.ones(32, 32)
    coast[:, :12] = 0.0
    z = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        vae.set_ocean_mask(coast)
        with_coast, _ = vae.decode_params(z)
        torch.testing.assert_close(with_coast, light_refinement(vae, z, coast))
        vae.set_ocean_mask(torch.zeros(32, 32))  # zeroing the mask changes the output
        all_land, _ = vae.decode_params(z)
    assert not torch.allclose(with_coast, all_land)


@pytest.mark.parametrize(
    ("key", "value"),
    [("light_channels", []), ("light_channels", [16, 0]), ("light_channels", [16, 8, 4, 2])],
)
def test_bad_light_decoder_widths_are_one_line_naming_the_key(tiny_dataset, key, value):
    """The config (or, for what only the network knows, the build) refuses it: one line, not a traceback."""
    with pytest.raises(UserError, match=f"vae.{key}") as info:
        cfg = config_from_dict(
            {
                "stage": "autoencoder",
                "data": {"path": str(tiny_dataset)},
                "vae": {"preset": "tiny-vae", "decoder_arch": "light", key: value},
            }
        )
        build_stage_model(cfg, read_manifest(tiny_dataset), read_static(tiny_dataset))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("unet", "upsample", "bilinear"), ("vae", "decoder_arch", "x"), ("vae", "refine_channels", -1)],
)
def test_bad_layout_values_are_one_line_naming_the_key(section, key, value):
    with pytest.raises(UserError, match=f"{section}.{key}") as info:
        config_from_dict({section: {key: value}})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("key", "value"), [("heads", 3), ("kernel_size", 4)])
def test_unet_values_that_do_not_build_are_one_line_naming_the_key(tiny_dataset, key, value):
    with pytest.raises(UserError, match=f"unet.{key}") as info:
        cfg = config_from_dict(
            {"stage": "diffusion", "data": {"path": str(tiny_dataset)}, "unet": {"preset": "tiny-unet", key: value}}
        )
        build_stage_model(cfg, read_manifest(tiny_dataset), read_static(tiny_dataset))
    assert "\n" not in str(info.value)
