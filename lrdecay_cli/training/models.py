"""The networks, by name: `mlp` (Keras' MNIST tutorial) and `cnn` (pytorch/examples' MNIST net)."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from lrdecay_cli.config.spec import CnnSpec, MlpSpec


class Mlp(nn.Sequential):
    """Flatten, hidden Linear+ReLU layers (optional dropout), 10 logits; torch's or Keras' initial weights."""

    def __init__(self, spec: MlpSpec):
        layers: list[nn.Module] = [nn.Flatten()]
        width = 28 * 28
        for hidden in spec.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if spec.dropout:
                layers.append(nn.Dropout(spec.dropout))
            width = hidden
        layers.append(nn.Linear(width, 10))
        super().__init__(*layers)
        if spec.init == "glorot_uniform":
            # Keras Dense's defaults, drawn after torch's own init from the same seeded global RNG, layer by
            # layer (so a stacked member, built after the same torch.manual_seed, gets the same weights)
            for layer in self:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)


class Cnn(nn.Module):
    """The pytorch/examples MNIST network, returning logits (its log_softmax lives in the loss)."""

    def __init__(self, spec: CnnSpec):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


MODELS: dict[str, type[nn.Module]] = {"mlp": Mlp, "cnn": Cnn}


def build_model(spec: MlpSpec | CnnSpec) -> nn.Module:
    return MODELS[spec.name](spec)
