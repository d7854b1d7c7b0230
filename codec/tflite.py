"""Slot readers that let codec.apply patch the float32 weights of a .tflite file in place.

``apply_payload(path, payload, n)`` finds this reader by the file's content (codec.model_files) and
updates every bound weight buffer byte for byte; the rest of the file is never written. A slot's shape
is the parameter's logical (PyTorch) shape and its permutation says how the file stores it, so records
keep PyTorch shapes. Everything read
from the file is checked first: the binding's tensors exist, are float32, have the permuted shape, own
a buffer of exactly that many bytes inside the file, and no two of those buffers overlap.
"""

from __future__ import annotations

import math

from codec.errors import FormatError, ModelMismatchError
from codec.limits import DEFAULT_LIMITS, Limits
from codec.tflite_binding import METADATA_NAME, Binding, BoundTensor, binding_from_bytes
from codec.tflite_graph import graph_binding
from codec.tflite_model import FLOAT32, BufferSpan, TFLiteModel, parse_tflite
from codec.weights import SlotReader, TensorSlot


def read_binding(buffer: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> Binding:
    """The binding stored in a .tflite file's "rankcast.binding" metadata; raises FormatError."""
    return _embedded_binding(parse_tflite(buffer), buffer, limits)


def tflite_slots(buffer: memoryview, limits: Limits = DEFAULT_LIMITS) -> dict[str, TensorSlot]:
    """Slots of every parameter named by the file's own binding, or, in a file without one, of the weights
    of its conv, depthwise and fully connected operators (codec.tflite_graph); a codec.apply SlotReader."""
    model = parse_tflite(buffer)
    if METADATA_NAME not in model.metadata:
        return _slots(model, graph_binding(buffer), reserved=[])
    binding = _embedded_binding(model, buffer, limits)
    return _slots(model, binding, reserved=[model.buffers[model.metadata[METADATA_NAME]]])


def binding_slot_reader(binding: Binding) -> SlotReader:
    """A SlotReader for a .tflite file without an embedded binding (for example from bind_by_content)."""

    def read(buffer: memoryview, limits: Limits) -> dict[str, TensorSlot]:
        del limits  # the binding was validated when it was made
        return _slots(parse_tflite(buffer), binding, reserved=[])

    return read


def _embedded_binding(model: TFLiteModel, buffer: bytes | memoryview, limits: Limits) -> Binding:
    index = model.metadata.get(METADATA_NAME)
    if index is None:
        raise FormatError(f"the TFLite file has no {METADATA_NAME!r} metadata; bind it by content instead")
    if index >= len(model.buffers):
        raise FormatError(f"the {METADATA_NAME!r} metadata names buffer {index}; the file has {len(model.buffers)}")
    span = model.buffers[index]
    return binding_from_bytes(bytes(buffer[span.offset : span.end]), limits)


def _slots(model: TFLiteModel, binding: Binding, reserved: list[BufferSpan]) -> dict[str, TensorSlot]:
    slots = {entry.name: _slot(model, entry) for entry in binding.tensors}
    spans = sorted(reserved + [BufferSpan(slot.offset, slot.nbytes) for slot in slots.values()], key=lambda s: s.offset)
    for before, after in zip(spans, spans[1:], strict=False):
        if after.offset < before.end:
            raise FormatError(f"the TFLite buffers at {before.offset} and {after.offset} overlap")
    return slots


def _slot(model: TFLiteModel, entry: BoundTensor) -> TensorSlot:
    span = model.data_of(entry.tensor)
    tensor = model.tensors[entry.tensor]
    if tensor.buffer != entry.buffer:
        raise FormatError(f"{entry.name}: the binding names buffer {entry.buffer}, the tensor uses {tensor.buffer}")
    if tensor.type != FLOAT32:
        raise ModelMismatchError(f"{entry.name}: TFLite tensor {entry.tensor} is not float32 (type {tensor.type})")
    if tensor.shape != entry.stored_shape:
        raise ModelMismatchError(
            f"{entry.name}: TFLite tensor {entry.tensor} has shape {tensor.shape}, not {entry.stored_shape}"
        )
    nbytes = 4 * math.prod(entry.shape)
    if span.length != nbytes:
        raise FormatError(f"{entry.name}: buffer {entry.buffer} holds {span.length} bytes, not {nbytes}")
    identity = entry.permutation == tuple(range(len(entry.shape)))
    return TensorSlot(entry.name, span.offset, entry.shape, None if identity else entry.permutation)
