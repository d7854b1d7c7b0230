"""Test-session settings shared by every folder, and the tiny torch models of the method's tests.

The torch fixtures import torch only when a test asks for them: the device environment has none, and
collects folders (codec, device_client, mqtt, ...) that never do.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# tests/device_env checks the torch-free device venv; elsewhere there is nothing for it to check.
collect_ignore = [] if os.environ.get("RANKCAST_DEVICE_ENV") == "1" else ["device_env"]

# This machine is shared and noisy: no per-example deadlines. In CI, the same examples every run,
# so a red build is reproducible; locally, new examples every run, to keep finding bugs.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("local", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")


def tiny_mlp():
    """16 -> 24 -> 24 -> 4 on 1×4×4 inputs."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 4))


def tiny_cnn():
    """Plain, grouped and depthwise convolutions and a BatchNorm, so every code path is exercised."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 16, 4),
    ).eval()


@pytest.fixture(params=["mlp", "cnn"])
def model(request: pytest.FixtureRequest):
    """Each tiny model in turn."""
    return tiny_mlp() if request.param == "mlp" else tiny_cnn()


@pytest.fixture
def data():
    """96 random 1×4×4 inputs with four classes that depend on them."""
    import torch

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(96, 1, 4, 4, generator=generator)
    y = (x.sum(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return x, y


@pytest.fixture
def mlp():
    return tiny_mlp()


@pytest.fixture
def cnn():
    return tiny_cnn()


@pytest.fixture
def operator_error(capsys: pytest.CaptureFixture[str]):
    """``read(code)``: the one line `rankcast` printed on stderr, checked to be ``rankcast: error [code]: ...``."""

    def read(code: str) -> str:
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"rankcast: error [{code}]: "), err
        return lines[0]

    return read
