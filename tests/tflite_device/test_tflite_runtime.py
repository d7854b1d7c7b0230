"""The device's TFLite runtime wrapper: batches, the canary check, and running a patched model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codec.apply import apply_payload
from codec.canary import Canary
from codec.payload import encode_payload
from codec.quantise import lowrank_record
from codec.tflite import tflite_slots
from codec.weights import encode_weights, load_weights
from device_client.errors import CanaryError
from device_client.predictor import check_canary
from device_client.tflite_runtime import TFLiteModel, installed_runtimes, interpreter_class, run
from publisher.tflite.writer import Graph, serialize


def _forward(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    hidden = np.maximum(x @ weights["fc1.weight"].T + weights["fc1.bias"], 0)
    return hidden @ weights["fc2.weight"].T + weights["fc2.bias"]


@pytest.mark.parametrize("rows", [1, 7])
def test_outputs_match_numpy_for_any_batch(mlp, tmp_path: Path, rows: int) -> None:
    x = np.random.default_rng(rows).standard_normal((rows, 16)).astype(np.float32)
    outputs = run(mlp.write(tmp_path / "mlp.tflite"), x)
    assert outputs.shape == (rows, 4)
    np.testing.assert_allclose(outputs, _forward(mlp.weights, x), atol=1e-5, rtol=0)


def test_a_graph_with_a_fixed_batch_runs_row_by_row(tmp_path: Path) -> None:
    graph = Graph()
    x = graph.activation("x", (1, 2, 3))
    shape = graph.constant("shape", np.array([1, 6], np.int32))
    flat = graph.activation("flat", (1, 6))
    graph.operator("RESHAPE", [x, shape], [flat], new_shape=(1, 6))
    graph.inputs, graph.outputs = [x], [flat]
    path = tmp_path / "fixed.tflite"
    path.write_bytes(serialize(graph))
    inputs = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    model = TFLiteModel(path)
    np.testing.assert_array_equal(model.predict(inputs), inputs.reshape(4, 6))
    np.testing.assert_array_equal(model.predict(inputs[:1]), inputs[:1].reshape(1, 6))


def test_inputs_of_the_wrong_shape_are_refused(mlp, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not fit"):
        run(mlp.write(tmp_path / "mlp.tflite"), np.zeros((2, 15), np.float32))


def test_the_canary_accepts_close_outputs_and_refuses_far_or_non_finite_ones(mlp, tmp_path: Path) -> None:
    path = mlp.write(tmp_path / "mlp.tflite")
    x = np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)
    expected = _forward(mlp.weights, x)

    def canary(inputs: np.ndarray, outputs: np.ndarray) -> Canary:
        return Canary.from_arrays(inputs, outputs, 1e-4)

    check_canary(path, canary(x, expected))
    for bad in (canary(x, expected + 1e-2), canary(x, expected[:, :3]), canary(x[:, :3], expected)):
        with pytest.raises(CanaryError):
            check_canary(path, bad)
    (tmp_path / "broken.tflite").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CanaryError, match="cannot run"):
        check_canary(tmp_path / "broken.tflite", canary(x, expected))
    data = bytearray(path.read_bytes())  # the codec never writes Inf: do it behind its back
    slot = tflite_slots(memoryview(data))["fc2.bias"]
    slot.view(data)[:] = np.inf
    path.write_bytes(data)
    with pytest.raises(CanaryError, match="NaN or Inf"):
        check_canary(path, canary(x, expected))


def test_each_installed_runtime_can_be_asked_for_by_name(mlp, tmp_path: Path) -> None:
    path = mlp.write(tmp_path / "mlp.tflite")
    x = np.ones((2, 16), np.float32)
    assert installed_runtimes() and installed_runtimes()[0] == interpreter_class().__module__.split(".")[0]
    for runtime in installed_runtimes():
        np.testing.assert_allclose(run(path, x, runtime), _forward(mlp.weights, x), atol=1e-5, rtol=0)
    with pytest.raises(ImportError):
        interpreter_class("no_such_runtime")


def test_a_patched_model_runs_the_reconstructed_weights(mlp, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    payload, length = encode_payload([
        lowrank_record("fc1.weight", (32, 16), rng.standard_normal((32, 4)) * 0.1, rng.standard_normal((4, 16)) * 0.1),
        lowrank_record("fc2.weight", (4, 32), rng.standard_normal((4, 2)) * 0.1, rng.standard_normal((2, 32)) * 0.1,
                       dtype="i4"),
    ])
    path, rcw = mlp.write(tmp_path / "mlp.tflite"), tmp_path / "mlp.rcw"
    rcw.write_bytes(encode_weights(mlp.weights))
    apply_payload(path, payload, length, slot_reader=tflite_slots)
    apply_payload(rcw, payload, length)
    x = rng.standard_normal((9, 16)).astype(np.float32)
    np.testing.assert_allclose(run(path, x), _forward(load_weights(rcw), x), atol=1e-5, rtol=0)


def test_the_runtimes_info_lines_stay_out_of_the_output_and_its_warnings_do_not(mlp, tmp_path: Path, capfd) -> None:
    import os

    from device_client.tflite_runtime import native_info_kept_quiet

    path = mlp.write(tmp_path / "mlp.tflite")
    capfd.readouterr()
    run(path, np.zeros((2, 16), np.float32))
    assert "INFO: " not in capfd.readouterr().err, "the XNNPACK delegate's INFO line is kept out"
    with native_info_kept_quiet():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nWARNING: something real\n")
    assert capfd.readouterr().err == "WARNING: something real\n"
