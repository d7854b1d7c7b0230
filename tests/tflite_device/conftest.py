"""Small .tflite models written by the torch-free writer, with their weights and binding.

Everything in this folder runs in the device environment too: numpy, flatbuffers and a TFLite runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from codec.tflite_binding import Binding
from publisher.tflite.ops import Lowering, Window


@dataclass(frozen=True)
class Built:
    """A written model: its bytes, the binding inside it and its logical (PyTorch-layout) weights."""

    data: bytes
    binding: Binding
    weights: dict[str, np.ndarray]

    def write(self, path: Path) -> Path:
        path.write_bytes(self.data)
        return path


def _random(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.3).astype(np.float32)


@pytest.fixture(scope="session")
def mlp() -> Built:
    """16 -> 32 -> ReLU -> 4, input 1×16."""
    rng = np.random.default_rng(1)
    weights = {"fc1.weight": _random(rng, 32, 16), "fc1.bias": _random(rng, 32),
               "fc2.weight": _random(rng, 4, 32), "fc2.bias": _random(rng, 4)}
    lowering = Lowering()
    x = lowering.input("x", (1, 16))
    x = lowering.relu("relu", lowering.linear("fc1", x, weights["fc1.weight"], weights["fc1.bias"]))
    lowering.output(lowering.linear("fc2", x, weights["fc2.weight"], weights["fc2.bias"]))
    return Built(*lowering.finish(), weights)


@pytest.fixture(scope="session")
def cnn() -> Built:
    """conv 3->4 (SAME) -> ReLU -> depthwise 4->8 stride 2 (explicit PAD) -> ReLU6 -> flatten -> linear 128->5."""
    rng = np.random.default_rng(2)
    weights = {"conv.weight": _random(rng, 4, 3, 3, 3), "conv.bias": _random(rng, 4),
               "dw.weight": _random(rng, 8, 1, 3, 3), "dw.bias": _random(rng, 8),
               "fc.weight": _random(rng, 5, 128), "fc.bias": _random(rng, 5)}
    lowering = Lowering()
    x = lowering.input("x", (1, 3, 8, 8))
    x = lowering.conv2d("conv", x, weights["conv.weight"], weights["conv.bias"], Window((3, 3), (1, 1), (1,) * 4), 1)
    x = lowering.relu("relu", x)
    x = lowering.conv2d("dw", x, weights["dw.weight"], weights["dw.bias"], Window((3, 3), (2, 2), (1,) * 4), 4)
    x = lowering.flatten("flatten", lowering.relu("relu6", x, six=True))
    lowering.output(lowering.linear("fc", x, weights["fc.weight"], weights["fc.bias"]))
    return Built(*lowering.finish(), weights)

