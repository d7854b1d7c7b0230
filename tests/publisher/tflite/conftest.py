"""PyTorch models with random weights for the exporter tests (server environment: torch + LiteRT)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


def make_mlp() -> nn.Module:
    """The issue's MLP: 64 -> 256 -> 256 -> 10."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).eval()


def make_cnn() -> nn.Module:
    """Conv, depthwise conv (multiplier 2), pools, flatten and linear; input 1×3×16×16."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.ReLU6(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    ).eval()


@pytest.fixture(scope="session")
def fresh_model() -> Callable[[str], nn.Module]:
    """A new model with the fixed random weights, by name ("mlp" or "cnn"), for module-scoped fixtures."""
    return lambda name: {"mlp": make_mlp, "cnn": make_cnn}[name]()


@pytest.fixture
def mlp() -> nn.Module:
    return make_mlp()


@pytest.fixture
def cnn() -> nn.Module:
    return make_cnn()
