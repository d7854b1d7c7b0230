"""A small float32 .tflite model with random weights, written torch-free (publisher.tflite.ops), so the
device-side tests that run it also run in the device environment (tflite-runtime, NumPy 1.x).
"""

from __future__ import annotations

import numpy as np

from codec.model_files import read_model_slots
from publisher.tflite.ops import Lowering

INPUTS = 16


def make_tflite(seed: int) -> bytes:
    """16 -> 32 -> ReLU -> 4 with random weights; input 1×16 (any batch at run time)."""
    rng = np.random.default_rng(seed)
    weights = {name: (rng.standard_normal(shape) * 0.3).astype(np.float32) for name, shape in
               {"fc1.weight": (32, INPUTS), "fc1.bias": (32,), "fc2.weight": (4, 32), "fc2.bias": (4,)}.items()}
    lowering = Lowering()
    x = lowering.input("x", (1, INPUTS))
    x = lowering.relu("relu", lowering.linear("fc1", x, weights["fc1.weight"], weights["fc1.bias"]))
    lowering.output(lowering.linear("fc2", x, weights["fc2.weight"], weights["fc2.bias"]))
    return lowering.finish()[0]


def weights_of(model_file: bytes) -> dict[str, np.ndarray]:
    """The logical (PyTorch-layout) weights inside a .tflite or RCW file."""
    return {name: slot.view(model_file).copy() for name, slot in read_model_slots(memoryview(model_file)).items()}


def reference_outputs(model_file: bytes, x: np.ndarray) -> np.ndarray:
    """The MLP of make_tflite computed with numpy from the file's weights."""
    w = weights_of(model_file)
    hidden = np.maximum(x @ w["fc1.weight"].T + w["fc1.bias"], 0)
    return hidden @ w["fc2.weight"].T + w["fc2.bias"]
