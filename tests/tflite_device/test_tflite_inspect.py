"""`rankcast inspect` on a .tflite names the tensors updates can change, in PyTorch terms."""

from __future__ import annotations

import hashlib

from codec.describe import describe


def test_inspect_lists_bound_tensors_with_logical_shapes_and_stored_layout(cnn) -> None:
    text = describe(cnn.data)
    assert hashlib.sha256(cnn.data).hexdigest() in text
    for name, weight in cnn.weights.items():
        line = next(line for line in text.splitlines() if line.strip().startswith(name + " "))
        assert "x".join(map(str, weight.shape)) in line
    conv_line = next(line for line in text.splitlines() if line.strip().startswith("conv.weight "))
    assert "stored as axes (0, 2, 3, 1)" in conv_line  # OIHW kept as OHWI
    assert f"{len(cnn.weights)} tensors" in text
