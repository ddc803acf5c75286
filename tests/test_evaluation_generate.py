"""Sampling paths: batched latent decoding and torch.compile'd sampling agree with the eager ones."""

import pytest
import torch

from hpc_seaice.config import DiffusionConfig, config_from_dict
from hpc_seaice.data.format.variables import BOUNDS, VARIABLES
from hpc_seaice.inference.generate import LatentDecoder, compile_for_sampling, generate
from hpc_seaice.models.build import build_unet, build_vae

STATS = {
    "data_mean": [1.0, 0.5, 0.4, 0.0, 0.0],
    "data_std": [1.0, 0.45, 0.4, 0.06, 0.07],
    "lower": [BOUNDS[v][0] for v in VARIABLES],
    "upper": [BOUNDS[v][1] for v in VARIABLES],
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def light_vae():
    torch.manual_seed(0)
    cfg = config_from_dict({"vae": {"preset": "tiny-vae", "decoder_arch": "light", "light_channels": [8, 8]}}).vae
    return build_vae(cfg, **STATS).eval()


def test_batched_decoding_equals_one_sample_at_a_time():
    vae = light_vae()
    mask = torch.ones(32, 32)
    mask[:4] = 0
    z = torch.randn(5, 4, 4, 4)
    mean, std = torch.linspace(-1, 1, 4), torch.linspace(0.5, 2, 4)
    batched = LatentDecoder(vae, mean, std, mask, torch.device("cpu"), decode_batch=2)
    fields, raw = batched(z)
    assert fields.shape == raw.shape == (5, 5, 32, 32)
    with torch.no_grad():
        for i in range(5):
            mu, _ = vae.decode_params(z[i : i + 1] * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1))
            expected = vae.denormalize(mu) * mask
            torch.testing.assert_close(raw[i : i + 1], expected, rtol=1e-5, atol=1e-5)
    assert (fields[:, :, :4] == 0).all() and (fields[:, 1] <= 1).all() and (fields[:, 0] >= 0).all()
    with pytest.raises(ValueError):
        LatentDecoder(vae, mean, std, mask, torch.device("cpu"), decode_batch=0)


def test_compiled_sampling_and_decoding_agree_with_eager_on_cpu():
    torch.manual_seed(1)
    cfg = config_from_dict({"unet": {"preset": "tiny-unet", "in_channels": 4}}).unet
    net = build_unet(cfg).eval()
    noise = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    diffusion = DiffusionConfig()
    eager = generate(net, noise, None, diffusion, steps=2)
    compiled_net = compile_for_sampling(net, torch.device("cpu"))
    compiled = generate(compiled_net, noise, None, diffusion, steps=2)
    assert not torch.equal(eager, noise)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    assert list(net.state_dict()) == list(compiled_net.compiled._orig_mod.state_dict())  # no in-place change

    vae = light_vae()
    z = torch.randn(2, 4, 4, 4)
    args = (vae, torch.zeros(4), torch.ones(4), torch.ones(32, 32), torch.device("cpu"))
    torch.testing.assert_close(
        LatentDecoder(*args, compile=True)(z)[1], LatentDecoder(*args)(z)[1], rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("arch", ["conv", "light"])
def test_compiled_decoding_sees_the_coast_like_eager(arch):
    """The compiled decoder pass must get the land mask as ``decode_params`` gives it: the mirror
    decoder cannot run without it, and the light decoder's refinement reads it."""
    torch.manual_seed(3)
    vae_cfg = {"preset": "tiny-vae", "decoder_arch": arch, "light_channels": [8, 8], "refine_channels": 4}
    vae = build_vae(config_from_dict({"vae": vae_cfg}).vae, **STATS).eval()
    coast = torch.ones(32, 32)
    coast[:, :10] = 0.0
    vae.set_ocean_mask(coast)
    if arch == "light":
        with torch.no_grad():
            vae.decoder.refine.conv2.weight.normal_()  # zero-initialised: make the mask matter
    z = torch.randn(2, 4, 4, 4)
    args = (vae, torch.zeros(4), torch.ones(4), torch.ones(32, 32), torch.device("cpu"))
    eager = LatentDecoder(*args)(z)[1]
    torch.testing.assert_close(LatentDecoder(*args, compile=True)(z)[1], eager, rtol=1e-4, atol=1e-4)
    vae.set_ocean_mask(torch.ones(32, 32))
    assert not torch.allclose(LatentDecoder(*args)(z)[1], eager, rtol=1e-4, atol=1e-4)  # the coast matters
