"""Files of `rankcast update build` on a tiny model: its module, weights, deployed file and data in tmp_path."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

MODULE = textwrap.dedent(
    """
    from torch import nn

    def build():
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    """
)


@pytest.fixture
def files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """tinynet.py (16 inputs, 4 classes), base.pt, deployed.rcw holding its weights, train.npz and eval.npz.

    The module is imported in the test process only while the fixture makes them; tests that import it
    again (through `--arch tinynet:build`) have it removed from sys.modules afterwards."""
    import torch

    from publisher.training.reconstruct import model_file

    (tmp_path / "tinynet.py").write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        import tinynet  # noqa: PLC0415 - written by this fixture

        torch.manual_seed(0)
        model = tinynet.build()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tinynet", None)
    torch.save(model.state_dict(), tmp_path / "base.pt")
    (tmp_path / "deployed.rcw").write_bytes(model_file(model.state_dict()))
    rng = np.random.default_rng(0)
    for name, count in (("train", 160), ("eval", 80)):
        x = rng.standard_normal((count, 16)).astype(np.float32)
        np.savez(tmp_path / f"{name}.npz", x=x, y=(x[:, 0] > 0) + 2 * (x[:, 1] > 0))
    yield {name: tmp_path / name for name in ("base.pt", "train.npz", "eval.npz", "deployed.rcw")}
    sys.modules.pop("tinynet", None)
