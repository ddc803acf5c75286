"""Exponential moving average of model weights (the network used for sampling).

After every optimiser step: p_ema <- decay p_ema + (1 - decay) p (authors: decay 0.999, as
``torch.optim.swa_utils.AveragedModel``). Buffers are copied. The averaged copy carries its own
``state_dict`` so resume is exact.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DeepSpeed wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


class EMA:
    """Holds ``module``, an averaged copy of ``model`` in eval mode without gradients."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        # A deep copy of a module compiled in place (nn.Module.compile) drops the compiled call
        # (Module.__getstate__), so the average runs eager on its own weights.
        self.module = copy.deepcopy(_unwrap(model))
        self.module.eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        source = _unwrap(model)
        params = dict(source.named_parameters())
        for name, p_ema in self.module.named_parameters():
            p = params[name].detach()
            if p_ema.dtype.is_floating_point:
                p_ema.lerp_(p.to(p_ema.dtype), 1.0 - self.decay)
            else:
                p_ema.copy_(p)
        buffers = dict(source.named_buffers())
        for name, b_ema in self.module.named_buffers():
            if name in buffers:
                b_ema.copy_(buffers[name])
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
