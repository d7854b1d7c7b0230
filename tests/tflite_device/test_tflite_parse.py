"""Reading .tflite files on the device: buffer spans, tensors, the binding, and refusals of bad bytes."""

from __future__ import annotations

import math
from dataclasses import replace

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.errors import FormatError, ModelMismatchError, UpdateError
from codec.limits import DEFAULT_LIMITS
from codec.tflite import binding_slot_reader, read_binding, tflite_slots
from codec.tflite_binding import Binding, BoundTensor, binding_from_bytes
from codec.tflite_model import FLOAT32, parse_tflite
from publisher.tflite.writer import Graph, serialize


def test_every_bound_buffer_holds_the_weight_in_its_stored_layout_16_byte_aligned(cnn) -> None:
    model = parse_tflite(cnn.data)
    for entry in cnn.binding.tensors:
        tensor, span = model.tensors[entry.tensor], model.data_of(entry.tensor)
        stored = np.transpose(cnn.weights[entry.name], entry.permutation)
        assert tensor.type == FLOAT32 and tensor.shape == stored.shape and tensor.name == entry.name
        assert span.offset % 16 == 0
        assert cnn.data[span.offset : span.end] == stored.astype("<f4").tobytes()


def test_the_embedded_binding_reads_back_equal(cnn, mlp) -> None:
    assert read_binding(cnn.data) == cnn.binding
    assert read_binding(mlp.data) == mlp.binding
    assert binding_from_bytes(cnn.binding.to_bytes()) == cnn.binding


def test_kernels_are_stored_ohwi_and_depthwise_as_1hwc(cnn) -> None:
    layouts = {entry.name: entry.layout for entry in cnn.binding.tensors}
    assert layouts["conv.weight"] == "OIHW -> OHWI"
    assert layouts["dw.weight"] == "OIHW -> IHWO"
    assert layouts["fc.weight"] == "OI -> OI"


def test_slots_have_logical_shapes_and_view_the_weights(cnn) -> None:
    slots = tflite_slots(memoryview(cnn.data))
    assert set(slots) == set(cnn.weights)
    assert slots["conv.weight"].permutation == (0, 2, 3, 1)
    assert slots["fc.weight"].permutation is None
    for name, slot in slots.items():
        assert slot.shape == cnn.weights[name].shape
        np.testing.assert_array_equal(slot.view(memoryview(cnn.data)), cnn.weights[name])


def test_a_file_that_is_not_tflite_is_refused() -> None:
    with pytest.raises(FormatError, match="TFL3"):
        parse_tflite(b"RCW1" + bytes(60))


def test_a_file_without_a_binding_is_bound_by_its_graph() -> None:
    graph = Graph()
    x = graph.activation("x", (1, 2))
    graph.inputs, graph.outputs = [x], [x]
    assert tflite_slots(memoryview(serialize(graph))) == {}  # no weighted operator: nothing to patch


def _reader_error(built, **changes) -> UpdateError:
    entry = replace(built.binding.tensors[0], **changes)
    reader = binding_slot_reader(Binding((entry,) + built.binding.tensors[1:]))
    with pytest.raises(UpdateError) as caught:
        reader(memoryview(built.data), DEFAULT_LIMITS)
    return caught.value


def test_a_binding_that_does_not_fit_the_file_is_refused(mlp) -> None:
    model = parse_tflite(mlp.data)
    activation = next(i for i, t in enumerate(model.tensors) if t.buffer == 0)
    assert isinstance(_reader_error(mlp, shape=(16, 32)), ModelMismatchError)
    assert isinstance(_reader_error(mlp, tensor=len(model.tensors)), FormatError)
    assert isinstance(_reader_error(mlp, buffer=0), FormatError)
    assert isinstance(_reader_error(mlp, tensor=activation), FormatError)


def test_a_buffer_bound_twice_is_refused(mlp) -> None:
    first = mlp.binding.tensors[0]
    twice = Binding((first, replace(first, name="copy.weight")))
    with pytest.raises(FormatError, match="overlap"):
        binding_slot_reader(twice)(memoryview(mlp.data), DEFAULT_LIMITS)


def test_a_non_float_tensor_is_refused() -> None:
    graph = Graph()
    codes = graph.constant("codes", np.arange(6, dtype=np.int32).reshape(2, 3))
    graph.inputs, graph.outputs = [codes], [codes]
    binding = Binding((BoundTensor("codes", codes, graph.tensors[codes].buffer, (2, 3), (0, 1)),))
    with pytest.raises(ModelMismatchError, match="float32"):
        binding_slot_reader(binding)(memoryview(serialize(graph)), DEFAULT_LIMITS)


@pytest.mark.parametrize("document", [
    {"format": 2, "tensors": []},
    {"format": 1, "tensors": [{"name": "w", "tensor": 1, "buffer": 1, "shape": [2, 2], "permutation": [0, 0]}]},
    {"format": 1, "tensors": [{"name": "w", "tensor": -1, "buffer": 1, "shape": [2], "permutation": [0]}]},
    {"format": 1, "tensors": [{"name": "w", "tensor": 1, "buffer": 1, "shape": [2], "permutation": [0], "x": 1}]},
    {"format": 1, "tensors": [{"name": "w", "tensor": 1, "buffer": 1, "shape": [0], "permutation": [0]}]},
])
def test_malformed_bindings_are_refused(document: dict) -> None:
    with pytest.raises(FormatError):
        binding_from_bytes(msgpack.packb(document))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_corrupted_files_raise_only_codec_errors(cnn, data) -> None:
    raw = bytearray(cnn.data)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))] if data.draw(st.booleans()) else raw
    try:
        slots = tflite_slots(memoryview(bytes(raw)))
    except UpdateError:
        return
    for slot in slots.values():
        assert slot.offset + 4 * math.prod(slot.shape) <= len(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_random_binding_bytes_raise_only_codec_errors(raw: bytes) -> None:
    try:
        binding_from_bytes(raw)
    except UpdateError:
        pass


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=4, max_size=300))
def test_random_bytes_behind_the_identifier_raise_only_codec_errors(raw: bytes) -> None:
    try:
        parse_tflite(raw[:4] + b"TFL3" + raw[4:])
    except UpdateError:
        pass
