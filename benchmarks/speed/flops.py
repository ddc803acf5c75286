"""Model construction and FLOP counting for the speed benchmark (meta device: nothing is allocated)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def ocean_mask(side: int, device: torch.device) -> torch.Tensor:
    """A disk of ocean (about half the cells, like the Arctic grid) with land around it."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    return ((yy.square() + xx.square()) < 0.64).float().to(device)


# --- model construction and FLOP counting --------------------------------------------------------


def unet_config(preset: str, channels_last: bool) -> Any:
    from hpc_seaice.models.build import load_model_preset

    cfg = load_model_preset(preset)
    cfg.channels_last = channels_last
    cfg.compile = False  # compiled explicitly below, after the FLOPs are counted
    return cfg


def vae_stats() -> dict[str, list[float]]:
    """Normalisation statistics and physical bounds of the five variables (values do not affect speed)."""
    from hpc_seaice.data.format.variables import BOUNDS, VARIABLES

    return {
        "data_mean": [0.0] * len(VARIABLES),
        "data_std": [1.0] * len(VARIABLES),
        "lower": [BOUNDS[v][0] for v in VARIABLES],
        "upper": [BOUNDS[v][1] for v in VARIABLES],
    }


def grouped_conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    groups,
    output_mask,
    out_shape,
    **kwargs,
) -> int:
    """FLOPs of ``aten.convolution_backward`` that respect ``groups``.

    torch's own formula (this torch: 2.13) counts the weight gradient of a grouped convolution
    as if it were dense, ``groups`` times too many: for the depthwise 7x7 convolutions of the
    ConvNeXt blocks (groups = channels) that inflates a training step about 10x over its forward.
    Same formula otherwise, with the weight-gradient term divided by ``groups`` (the fix of
    pytorch/pytorch#183405).
    """
    from torch.utils.flop_counter import conv_flop_count

    def t(shape: Sequence[int]) -> list[int]:
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        if transposed:
            weight = conv_flop_count(t(grad_out_shape), t(x_shape), t(out_shape[1]), transposed=False)
        else:
            weight = conv_flop_count(t(x_shape), t(grad_out_shape), t(out_shape[1]), transposed=False)
        flops += weight // groups
    return flops


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` by ``FlopCounterMode``, with grouped convolution backward counted right."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flop}
    )
    with counter:
        fn()
    return int(counter.get_total_flops())


def unet_flops(cfg: Any, shape: Sequence[int]) -> dict[str, int]:
    """FLOPs per sample of one forward and of one training forward+backward, on the meta device."""
    from hpc_seaice.models.build import build_unet

    with torch.device("meta"):
        net = build_unet(cfg)
        x = torch.zeros(1, *shape)
        gamma = torch.zeros(1)
        with torch.no_grad():
            forward = count_flops(lambda: net(x, gamma))
        train = count_flops(lambda: net(x, gamma).float().square().mean().backward())
    return {"forward": forward, "train_step": train}


def vae_flops(cfg: Any, shape: Sequence[int]) -> dict[str, int]:
    from hpc_seaice.models.build import build_vae

    with torch.device("meta"):
        vae = build_vae(cfg, **vae_stats())
        latent = vae.latent_shape(*shape[1:])
        with torch.no_grad():
            encode = count_flops(lambda: vae.encode(torch.zeros(1, *shape)))
            decode = count_flops(lambda: vae.decode_params(torch.zeros(1, *latent)))
    return {"encode": encode, "decode": decode}
