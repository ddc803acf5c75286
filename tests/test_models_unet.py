"""The U-Net denoiser: geometry, conditioning, memory format, compilation, autocast, presets."""

import pytest
import torch
from torch import nn

from hpc_seaice.config import DiffusionConfig, UNetConfig, VAEConfig, config_from_dict, preset_names
from hpc_seaice.errors import UserError
from hpc_seaice.models.build import build_unet, count_parameters, forward_flops, load_model_preset
from hpc_seaice.models.describe import main as describe_main
from hpc_seaice.models.unet import UNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides) -> UNetConfig:
    return config_from_dict({"unet": {"preset": "tiny-unet", **overrides}}).unet


def randomize(model: nn.Module, seed: int = 0, std: float = 0.1) -> nn.Module:
    """Perturb every parameter: at initialisation the output head and FiLM are exactly zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)
    return model


@pytest.mark.parametrize("shape", [(32, 32), (64, 32), (16, 48), (128, 128)])
def test_output_shape_on_any_grid_divisible_by_two_to_the_levels(shape):
    net = randomize(UNet(tiny()))
    x = torch.randn(2, 5, *shape)
    out = net(x, torch.tensor([-3.0, 4.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_clear_errors_for_bad_geometry():
    net = UNet(tiny())
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 5, 30, 32), torch.zeros(1))
    with pytest.raises(ValueError, match=r"\[B, 5, H, W\]"):
        net(torch.randn(1, 4, 32, 32), torch.zeros(1))
    with pytest.raises(ValueError, match="attention_max_side"):
        net(torch.randn(1, 5, 256, 256), torch.zeros(1))  # 64 x 64 tokens
    with pytest.raises(UserError, match="unet.heads"):
        tiny(heads=3)  # the config refuses it in one line
    with pytest.raises(ValueError, match="heads"):
        UNet(tiny().model_copy(update={"heads": 3}))  # and so does the network, given an unchecked config


def test_untrained_net_predicts_zero_and_conditioning_reaches_the_output():
    x = torch.randn(2, 5, 32, 32)
    assert UNet(tiny())(x, torch.zeros(2)).abs().max() == 0  # zero-initialised head
    net = randomize(UNet(tiny()))
    out_a = net(x, torch.full((2,), -5.0))
    out_b = net(x, torch.full((2,), 5.0))
    assert (out_a - out_b).abs().mean() > 1e-3  # FiLM from the log-SNR embedding matters
    # the batch elements are independent: one sample's output ignores the other's input
    x2 = x.clone()
    x2[1] = torch.randn(5, 32, 32)
    torch.testing.assert_close(net(x2, torch.zeros(2))[0], net(x, torch.zeros(2))[0])


@pytest.mark.parametrize("block", ["convnext", "resnet"])
def test_every_parameter_gets_a_gradient(block):
    net = randomize(UNet(tiny(block=block)))
    net(torch.randn(2, 5, 32, 32), torch.tensor([0.0, 10.0])).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_gamma_is_normalised_with_the_training_range():
    cfg = tiny()
    a = randomize(build_unet(cfg, DiffusionConfig(gamma_min=-20.0, gamma_max=20.0)))
    b = build_unet(cfg, DiffusionConfig(gamma_min=-10.0, gamma_max=10.0))
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 5, 32, 32)
    # the same normalised position: gamma=10 in [-20, 20] equals gamma=5 in [-10, 10]
    torch.testing.assert_close(a(x, torch.tensor([10.0])), b(x, torch.tensor([5.0])))


def test_channels_last_gives_the_same_output():
    ref = randomize(UNet(tiny()))
    cl = build_unet(tiny(channels_last=True))
    cl.load_state_dict(ref.state_dict())
    assert cl.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    x, g = torch.randn(2, 5, 32, 32), torch.tensor([1.0, -1.0])
    torch.testing.assert_close(cl(x, g), ref(x, g), rtol=1e-4, atol=1e-5)


def test_compile_traces_the_whole_network_without_graph_breaks():
    """Dynamo + AOTAutograd over forward and backward (fullgraph: no graph breaks).

    The Inductor C++ code generation is not run here: on 2 CPU cores it takes minutes.
    """
    built = build_unet(tiny(compile=True))
    assert built._compiled_call_impl is not None
    assert "conv_in.weight" in built.state_dict()  # in-place compile keeps the keys
    ref = randomize(UNet(tiny()))
    net = UNet(tiny())
    net.load_state_dict(ref.state_dict())
    torch._dynamo.reset()
    net.compile(backend="aot_eager", fullgraph=True)
    x, g = torch.randn(2, 5, 32, 32), torch.tensor([1.0, -1.0])
    out = net(x, g)
    out.square().mean().backward()
    torch.testing.assert_close(out, ref(x, g), rtol=1e-4, atol=1e-5)
    assert all(p.grad is not None for p in net.parameters())


def test_bf16_autocast_forward_backward():
    net = randomize(UNet(tiny()))
    x, g = torch.randn(2, 5, 32, 32), torch.tensor([1.0, -1.0])
    ref = net(x, g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, g)
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_every_preset_file_is_a_valid_config():
    names = preset_names()
    for required in ("paper-data", "paper-latent", "paper-vae", "demo-data", "demo-latent", "demo-vae"):
        assert required in names
    for name in names:
        cfg = load_model_preset(name)
        assert isinstance(cfg, VAEConfig) == name.endswith("vae")
    with pytest.raises(UserError, match="unknown model preset"):
        load_model_preset("no-such-preset")


def test_forward_flops_counts_a_convolution_exactly():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert forward_flops(conv, (torch.zeros(2, 3, 16, 16),)) == 2 * 2 * 8 * 3 * 9 * 16 * 16
    assert count_parameters(conv) == 8 * 3 * 9 + 8


def test_describe_prints_parameters_and_flops(capsys):
    assert describe_main(["tiny-unet", "tiny-vae:64", "demo-latent"]) == 0
    out = capsys.readouterr().out
    assert "tiny-unet" in out and "GFLOPs" in out and "4x8x8" in out
    for bad, why in (("tiny-unet:30", "divisible by 4"), ("tiny-unet:x", "whole number"), ("nope", "unknown model")):
        assert describe_main([bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("hpc-seaice describe: error: ") and why in err[0], err


def _fwd_bwd(name: str, side: int) -> None:
    cfg = load_model_preset(name)
    net = UNet(cfg)
    x = torch.randn(1, cfg.in_channels, side, side)
    out = net(x, torch.tensor([0.5]))
    (out - x).square().mean().backward()
    assert out.shape == x.shape
    assert net.conv_in.weight.grad is not None and torch.isfinite(net.conv_in.weight.grad).all()
    assert net.conv_out.weight.grad.abs().sum() > 0


def test_paper_latent_forward_backward_batch_1():
    _fwd_bwd("paper-latent", 64)


@pytest.mark.slow
def test_paper_data_forward_backward_batch_1():
    """The full 5 x 512 x 512 geometry, so the paper network is never broken (~25-40 s on one core)."""
    _fwd_bwd("paper-data", 512)


def test_unet_config_fields_have_defaults():
    # presets may omit any key: every field has a default
    assert not any(f.is_required() for f in UNetConfig.model_fields.values())
