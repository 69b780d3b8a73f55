"""The networks: Keras' initial weights for the mlp, drawn from the run's seed."""

import math

import torch
from torch import nn

from lrdecay_cli.training.models import build_model
from lrdecay_cli.config.spec import MlpSpec


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_glorot_uniform_is_xavier_uniform_from_the_same_seed_with_zero_biases():
    torch.manual_seed(3)
    model = build_model(MlpSpec(hidden=[64, 32], init="glorot_uniform"))
    torch.manual_seed(3)  # the same draws: the layers' own init first, then xavier_uniform_ layer by layer
    expected = [nn.Linear(784, 64), nn.Linear(64, 32), nn.Linear(32, 10)]
    for layer in expected:
        nn.init.xavier_uniform_(layer.weight)
    for got, want in zip(linears(model), expected, strict=True):
        assert torch.equal(got.weight, want.weight)
        assert torch.count_nonzero(got.bias) == 0
        fan_out, fan_in = got.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))  # Keras' glorot_uniform limit
        assert bound * 0.97 < got.weight.abs().max().item() <= bound


def test_torch_init_is_the_default_and_unchanged():
    torch.manual_seed(3)
    default = build_model(MlpSpec(hidden=[64]))
    torch.manual_seed(3)
    plain = [nn.Linear(784, 64), nn.Linear(64, 10)]
    for got, want in zip(linears(default), plain, strict=True):
        assert torch.equal(got.weight, want.weight) and torch.equal(got.bias, want.bias)
    torch.manual_seed(3)
    glorot = build_model(MlpSpec(hidden=[64], init="glorot_uniform"))
    assert not torch.equal(linears(glorot)[0].weight, linears(default)[0].weight)
