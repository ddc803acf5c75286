"""EMA of weights: the update rule, buffers, state round trip, independence from the live model."""

import pytest
import torch
from torch import nn

from hpc_seaice.diffusion.ema import EMA


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)  # has buffers (running stats, an integer counter)

    def forward(self, x):
        return self.norm(self.lin(x))


def test_update_is_the_exponential_moving_average():
    model = Small()
    ema = EMA(model, decay=0.9)
    p0 = model.lin.weight.detach().clone()
    with torch.no_grad():
        model.lin.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.lin.weight, 0.9 * p0 + 0.1 * (p0 + 1.0))
    with torch.no_grad():
        model.lin.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.lin.weight, 0.9 * (p0 + 0.1) + 0.1 * (p0 + 2.0))
    assert ema.num_updates == 2
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training


def test_buffers_are_copied_and_the_copy_is_independent():
    model = Small()
    ema = EMA(model, decay=0.99)
    model.train()
    model(torch.randn(8, 3))  # updates the running statistics
    ema.update(model)
    torch.testing.assert_close(ema.module.norm.running_mean, model.norm.running_mean)
    assert int(ema.module.norm.num_batches_tracked) == 1
    with torch.no_grad():
        model.lin.bias.fill_(100.0)
    assert (ema.module.lin.bias != 100.0).all()


def test_state_dict_round_trip():
    model = Small()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.lin.weight.mul_(3.0)
    ema.update(model)
    other = EMA(Small(), decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.5 and other.num_updates == 1
    torch.testing.assert_close(other.module.lin.weight, ema.module.lin.weight)
    with pytest.raises(ValueError):
        EMA(model, decay=1.5)


def test_unwraps_a_wrapper_with_module_attribute():
    class Wrapper(nn.Module):  # like DDP: the network is .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = Small()
    ema = EMA(Wrapper(model), decay=0.0)
    with torch.no_grad():
        model.lin.weight.fill_(2.0)
    ema.update(Wrapper(model))
    assert isinstance(ema.module, Small)
    torch.testing.assert_close(ema.module.lin.weight, torch.full((2, 3), 2.0))


def test_copy_of_a_compiled_model_runs_its_own_weights():
    """nn.Module.compile stores a compiled bound method of the original: the copy must not call it."""
    model = nn.Linear(3, 2)
    model.compile(backend="eager")
    ema = EMA(model, decay=1.0)  # never moves
    with torch.no_grad():
        model.weight.add_(5.0)
    x = torch.randn(4, 3)
    assert not torch.allclose(ema.module(x), model(x))
    torch.testing.assert_close(ema.module(x), x @ ema.module.weight.T + ema.module.bias)
