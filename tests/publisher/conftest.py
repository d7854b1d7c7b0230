"""Tiny models and data for the publisher's mechanics tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 4))


def tiny_cnn() -> nn.Module:
    """Plain, grouped and depthwise convolutions and a BatchNorm, so every code path is exercised."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 16, 4),
    ).eval()


@pytest.fixture(params=["mlp", "cnn"])
def model(request: pytest.FixtureRequest) -> nn.Module:
    return tiny_mlp() if request.param == "mlp" else tiny_cnn()


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(96, 1, 4, 4, generator=generator)
    y = (x.sum(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return x, y


@pytest.fixture
def mlp() -> nn.Module:
    return tiny_mlp()


@pytest.fixture
def cnn() -> nn.Module:
    return tiny_cnn()
