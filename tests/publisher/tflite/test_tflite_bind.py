"""Binding by content finds the exporter's own binding and reports what it cannot bind."""

from __future__ import annotations

import numpy as np
from torch import nn

from publisher.tflite.bind import bind_by_content
from publisher.tflite.export import export_tflite_bytes


def _numpy(model: nn.Module) -> dict[str, np.ndarray]:
    return {name: value.detach().numpy() for name, value in model.state_dict().items()}


def test_content_binding_equals_the_exported_binding(cnn: nn.Module, mlp: nn.Module) -> None:
    for model, shape in ((cnn, (1, 3, 16, 16)), (mlp, (1, 64))):
        data, exported = export_tflite_bytes(model, shape)
        binding, report = bind_by_content(data, _numpy(model))
        assert binding == exported
        assert report.ok and not report.unused_buffers and not report.skipped


def test_a_tampered_weight_is_reported_unmatched(cnn: nn.Module) -> None:
    data, exported = export_tflite_bytes(cnn, (1, 3, 16, 16))
    weights = _numpy(cnn)
    weights["2.weight"] = weights["2.weight"].copy()
    weights["2.weight"][3, 0, 1, 1] = np.nextafter(weights["2.weight"][3, 0, 1, 1], np.float32(np.inf))
    binding, report = bind_by_content(data, weights)
    assert report.unmatched == ("2.weight",) and not report.ok
    assert "2.weight" not in {entry.name for entry in binding.tensors}
    assert len(binding.tensors) == len(exported.tensors) - 1
    assert report.unused_buffers == (next(e.buffer for e in exported.tensors if e.name == "2.weight"),)
    assert "unmatched (no buffer holds these values): 2.weight" in report.summary()


def test_identical_weights_are_ambiguous_unless_tensor_names_decide(mlp: nn.Module) -> None:
    nn.init.zeros_(mlp[0].bias)
    nn.init.zeros_(mlp[2].bias)
    data, exported = export_tflite_bytes(mlp, (1, 64))
    binding, report = bind_by_content(data, _numpy(mlp))  # the exporter names tensors after parameters
    assert binding == exported and report.ok
    renamed = {f"renamed.{name}": value for name, value in _numpy(mlp).items()}
    _, report = bind_by_content(data, renamed)
    assert report.ambiguous == ("renamed.0.bias", "renamed.2.bias")


def test_non_float_entries_are_skipped(mlp: nn.Module) -> None:
    data, _ = export_tflite_bytes(mlp, (1, 64))
    weights = {**_numpy(mlp), "steps": np.array(3)}
    _, report = bind_by_content(data, weights)
    assert report.skipped == ("steps",) and report.ok
