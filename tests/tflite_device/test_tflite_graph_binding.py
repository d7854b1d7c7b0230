"""A .tflite file made by TensorFlow's converter, with no rankcast binding inside, is patched in place by its
graph: the weights of its conv, depthwise and fully connected operators, and nothing else (torch-free)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from codec.apply import apply_payload
from codec.payload import encode_payload
from codec.quantise import dense_record, lowrank_record
from codec.tflite import tflite_slots
from codec.tflite_graph import graph_binding, parse_graph
from device_client.tflite_runtime import run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"


def test_the_graph_binds_each_weighted_operator_in_pytorch_layout() -> None:
    data = (FIXTURES / "keras_cnn.tflite").read_bytes()
    codes = {op.index: op.code for op in parse_graph(data).operators}
    bound = {entry.name: (entry.shape, entry.permutation) for entry in graph_binding(data).tensors}
    assert [codes[i] for i in range(8)] == [3, 17, 4, 3, 1, 40, 9, 25]  # conv, max, depthwise, conv, avg, ...
    assert bound == {
        "op0.weight": ((16, 1, 3, 3), (0, 2, 3, 1)), "op0.bias": ((16,), (0,)),
        "op2.weight": ((16, 1, 3, 3), (1, 2, 3, 0)), "op2.bias": ((16,), (0,)),
        "op3.weight": ((24, 16, 1, 1), (0, 2, 3, 1)), "op3.bias": ((24,), (0,)),
        "op6.weight": ((10, 24), (0, 1)), "op6.bias": ((10,), (0,)),
    }


@pytest.mark.parametrize("stem", ["keras_mlp", "keras_cnn", "keras_blocks_b1"])
def test_a_payload_changes_only_the_bound_buffers_and_the_file_still_runs(stem: str, tmp_path: Path) -> None:
    path = tmp_path / f"{stem}.tflite"
    shutil.copy(FIXTURES / f"{stem}.tflite", path)
    before = path.read_bytes()
    slots = tflite_slots(memoryview(before))
    rng = np.random.default_rng(0)
    records = []
    for name, slot in slots.items():
        if len(slot.shape) == 1:
            records.append(dense_record(name, rng.standard_normal(slot.shape) * 0.01, dtype="i8"))
        else:
            rows, rest = slot.shape[0], int(np.prod(slot.shape[1:]))
            records.append(lowrank_record(name, slot.shape, rng.standard_normal((rows, 2)) * 0.1,
                                          rng.standard_normal((2, rest)) * 0.1))
    payload, length = encode_payload(records)
    digest = apply_payload(path, payload, length)
    after = path.read_bytes()
    assert digest == hashlib.sha256(after).digest() and after != before
    changed = np.flatnonzero(np.frombuffer(before, np.uint8) != np.frombuffer(after, np.uint8))
    spans = [(slot.offset, slot.offset + slot.nbytes) for slot in slots.values()]
    assert all(any(start <= byte < end for start, end in spans) for byte in changed)
    weighted = [op.index for op in parse_graph(before).operators if op.code in (3, 4, 9)]
    assert {f"op{index}.weight" for index in weighted} <= set(slots)
    inputs = np.load(FIXTURES / "digits_logits.npz")["inputs"]
    inputs = inputs.reshape(len(inputs), -1) if stem == "keras_mlp" else inputs
    outputs = run(path, inputs)
    assert np.all(np.isfinite(outputs)) and not np.allclose(outputs, np.load(FIXTURES / "digits_logits.npz")[stem])
