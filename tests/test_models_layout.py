"""Networks that know where the land is: the mask channel, checkerboard-free up-sampling, position
features at the bottleneck, and the old layout kept for runs trained with it."""

import pytest
import torch
from torch import nn

from hpc_seaice.config import config_from_dict
from hpc_seaice.models.build import build_vae
from hpc_seaice.models.layers import GridPosition, upsample_layer
from hpc_seaice.models.unet import UNet

OLD_UNET = {"mask_channel": False, "upsample": "transposed", "position": "none"}
STATS = {"data_mean": [0.0] * 5, "data_std": [1.0] * 5, "lower": [-9.0] * 5, "upper": [9.0] * 5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def unet(**overrides) -> UNet:
    return UNet(config_from_dict({"unet": {"preset": "tiny-unet", **overrides}}).unet)


def vae(**overrides):
    return build_vae(config_from_dict({"vae": {"preset": "tiny-vae", **overrides}}).vae, **STATS)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def coast(side: int = 32) -> torch.Tensor:
    """Land in the left third and a square island: a mask with real coastlines."""
    mask = torch.ones(side, side)
    mask[:, : side // 3] = 0
    mask[side // 2 : side // 2 + 4, side // 2 : side // 2 + 4] = 0
    return mask


def test_new_unet_reads_the_mask_and_the_old_layout_ignores_it():
    x, gamma = torch.randn(2, 5, 32, 32), torch.tensor([-2.0, 3.0])
    net = randomize(unet())
    assert net.conv_in.in_channels == 6
    all_ocean = net(x, gamma)
    net.set_ocean_fraction(coast())
    with_coast = net(x, gamma)
    assert with_coast.shape == x.shape and torch.isfinite(with_coast).all()
    assert (with_coast - all_ocean).abs().max() > 1e-3  # the network sees the coastline
    torch.testing.assert_close(net(x, gamma, ocean=torch.ones(32, 32)), all_ocean)  # a per-call override

    old = randomize(unet(**OLD_UNET))
    assert old.conv_in.in_channels == 5
    before = old(x, gamma)
    old.set_ocean_fraction(coast())
    torch.testing.assert_close(old(x, gamma), before)


def test_the_ocean_fraction_is_not_a_weight():
    net = unet()
    net.set_ocean_fraction(coast())
    assert "ocean_fraction" not in net.state_dict()  # checkpoints stay grid-free and loadable
    with pytest.raises(ValueError, match="does not fit"):
        net(torch.randn(1, 5, 64, 64), torch.zeros(1))


def test_new_networks_have_no_transposed_convolution_and_old_ones_keep_theirs():
    def transposed(model: nn.Module) -> int:
        return sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules())

    assert transposed(unet()) == 0 and transposed(vae()) == 0
    assert transposed(unet(**OLD_UNET)) == 2  # one per level: the layout old checkpoints hold


@pytest.mark.parametrize("kind", ["nearest", "transposed"])
def test_up_sampling_a_constant_map_gives_a_constant_map_only_without_transposed_conv(kind):
    """A transposed stride-2 convolution has four weight sets, one per cell of each 2x2 block: a
    constant input comes out as a 2-cell periodic pattern (the checkerboard). Nearest neighbour
    then a convolution gives every fine cell the same weights."""
    layer = randomize(upsample_layer(8, 4, kind), seed=3)
    with torch.no_grad():
        out = layer(torch.full((1, 8, 8, 8), 0.7))
    interior = out[..., 1:-1, 1:-1]  # the 3x3 convolution pads with zeros at the border
    spread = (interior - interior.mean(dim=(-2, -1), keepdim=True)).abs().amax()
    if kind == "nearest":
        assert spread < 1e-5
    else:
        assert spread > 1e-2  # the test sees the artefact where there is one


def test_position_features_tell_every_bottleneck_token_apart():
    pos = GridPosition(16)
    for side in (4, 8, 16):
        feats = pos.features(side, side)
        assert feats.shape == (side * side, 16)
        assert torch.cdist(feats, feats).add(torch.eye(side * side)).min() > 1e-3


def test_position_embedding_sits_in_the_bottleneck_and_gets_trained():
    net = unet()
    assert isinstance(net.position, GridPosition)
    assert unet(position="none").position is None
    assert unet(bottleneck_blocks=0).position is None  # no unused parameters without a bottleneck
    # Zero-initialised (the untrained net is unchanged), but on the gradient path.
    assert net.position.proj.weight.abs().max() == 0
    randomize(net.conv_out)
    net(torch.randn(2, 5, 32, 32), torch.zeros(2)).square().mean().backward()
    assert net.position.proj.weight.grad.abs().max() > 0
    # Identical tokens leave the embedding distinguishable by place.
    pos = randomize(GridPosition(16))
    out = pos(torch.ones(1, 64, 16), 8, 8)[0]
    assert torch.cdist(out, out).add(torch.eye(64)).min() > 1e-4


def test_vae_with_mask_channel_encodes_and_decodes_the_coast():
    x = torch.randn(2, 5, 32, 32)
    model = randomize(vae())
    assert model.encoder.conv_in.in_channels == 6 and model.decoder.conv_in.in_channels == 4 + 1
    mean, _ = model.encode(x)
    mu, _ = model.decode_params(mean)
    model.set_ocean_mask(coast())
    mean_c, logvar_c = model.encode(x)
    mu_c, _ = model.decode_params(mean)
    assert mean_c.shape == (2, 4, 4, 4) and logvar_c.shape == mean_c.shape and mu_c.shape == x.shape
    assert (mean_c - mean).abs().max() > 1e-4 and (mu_c - mu).abs().max() > 1e-4
    assert "ocean_mask" not in model.state_dict()
    with pytest.raises(ValueError, match="not divisible"):
        model.set_ocean_mask(torch.ones(30, 30))

    old = randomize(vae(mask_channel=False))
    assert old.encoder.conv_in.in_channels == 5
    mean, _ = old.encode(x)
    old.set_ocean_mask(coast())
    torch.testing.assert_close(old.encode(x)[0], mean)


def test_legacy_layout_for_fully_written_old_sections_only():
    """A run's config.yaml lists every key. One written before the layout keys existed gets the
    old layout; a new config (a preset and a few keys), or any config that is not a run folder's
    own config.yaml, gets the new one."""
    old_unet = {
        "preset": "tiny-unet", "in_channels": 5, "base_channels": 16, "channel_mult": [1, 2],
        "blocks_per_level": 1, "block": "convnext", "bottleneck_blocks": 1, "attention_max_side": 32,
        "heads": 2, "embedding_dim": 32, "mlp_ratio": 2, "kernel_size": 3, "dropout": 0.0,
        "channels_last": False, "compile": False,
    }  # fmt: skip
    old_vae = {
        "preset": "tiny-vae", "in_channels": 5, "latent_channels": 4, "base_channels": 8,
        "channel_mult": [1, 2, 2, 2], "blocks_per_level": 1, "block": "resnet", "decoder": "censored",
        "beta": 1e-4, "sigma_init": 0.5, "channels_last": False, "compile": False,
    }  # fmt: skip
    cfg = config_from_dict({"unet": old_unet, "vae": old_vae}, run_config=True)
    assert (cfg.unet.mask_channel, cfg.unet.upsample, cfg.unet.position) == (False, "transposed", "none")
    assert cfg.vae.mask_channel is False
    # The same sections in a user's config (not a run folder's config.yaml) are a new run's.
    user = config_from_dict({"unet": old_unet, "vae": old_vae})
    assert (user.unet.mask_channel, user.unet.upsample, user.vae.mask_channel) == (True, "nearest", True)
    new = config_from_dict({"unet": {"preset": "tiny-unet"}, "vae": {"preset": "tiny-vae"}})
    assert (new.unet.mask_channel, new.unet.upsample, new.unet.position) == (True, "nearest", "sincos")
    assert new.vae.mask_channel is True
    # A full section that names one layout key is a new one: the others take their defaults.
    mixed = config_from_dict({"unet": {**old_unet, "position": "none"}}, run_config=True).unet
    assert (mixed.mask_channel, mixed.upsample) == (True, "nearest")
