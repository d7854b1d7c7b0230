"""A torch-free writer of float32 TFLite flatbuffers from numpy weights and a small operator graph.

``Graph`` collects tensors, constant buffers, operators and metadata; ``serialize`` writes them with the
``flatbuffers`` Builder following the TFLite schema (tensorflow/lite/schema/schema.fbs, file
identifier "TFL3"). Buffer 0 is the schema's empty sentinel; every constant gets its own buffer, whose
data starts at a multiple of 16 bytes in the file (the schema's force_align), so it can be patched in
place. Only the first subgraph is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np

from publisher.errors import ExportError

SAME, VALID = 0, 1  # Padding
_TYPES = {np.dtype("<f4"): 0, np.dtype("<i4"): 2}  # TensorType FLOAT32, INT32
_DATA_ALIGNMENT = 16
_POOL = {"padding": (0, "b"), "stride_w": (1, "i"), "stride_h": (2, "i"), "filter_width": (3, "i"),
         "filter_height": (4, "i"), "fused_activation_function": (5, "b")}
_CONV = {"padding": (0, "b"), "stride_w": (1, "i"), "stride_h": (2, "i"), "fused_activation_function": (3, "b"),
         "dilation_w_factor": (4, "i"), "dilation_h_factor": (5, "i")}
_FUSED = {"fused_activation_function": (0, "b")}
_DEPTHWISE = {"padding": (0, "b"), "stride_w": (1, "i"), "stride_h": (2, "i"), "depth_multiplier": (3, "i"),
              "fused_activation_function": (4, "b"), "dilation_w_factor": (5, "i"), "dilation_h_factor": (6, "i")}


@dataclass(frozen=True)
class _OperatorKind:
    builtin_code: int
    options_type: int  # BuiltinOptions union tag; 0: no options table
    options: dict[str, tuple[int, str]]  # option name -> (field slot, kind: b int8, i int32, f float32, v [int32])


OPERATORS = {
    "ADD": _OperatorKind(0, 11, _FUSED),
    "AVERAGE_POOL_2D": _OperatorKind(1, 5, _POOL),
    "CONCATENATION": _OperatorKind(2, 10, {"axis": (0, "i"), "fused_activation_function": (1, "b")}),
    "CONV_2D": _OperatorKind(3, 1, _CONV),
    "DEPTHWISE_CONV_2D": _OperatorKind(4, 2, _DEPTHWISE),
    "FULLY_CONNECTED": _OperatorKind(9, 8, {"fused_activation_function": (0, "b"), "keep_num_dims": (2, "b")}),
    "LOGISTIC": _OperatorKind(14, 0, {}),
    "MAX_POOL_2D": _OperatorKind(17, 5, _POOL),
    "MUL": _OperatorKind(18, 21, _FUSED),
    "RELU": _OperatorKind(19, 0, {}),
    "RELU6": _OperatorKind(21, 0, {}),
    "RESHAPE": _OperatorKind(22, 17, {"new_shape": (0, "v")}),
    "SOFTMAX": _OperatorKind(25, 9, {"beta": (0, "f")}),
    "TANH": _OperatorKind(28, 0, {}),
    "PAD": _OperatorKind(34, 22, {}),
    "TRANSPOSE": _OperatorKind(39, 26, {}),
    "MEAN": _OperatorKind(40, 27, {"keep_dims": (0, "b")}),
    "SUB": _OperatorKind(41, 28, _FUSED),
    "DIV": _OperatorKind(42, 29, _FUSED),
    "PADV2": _OperatorKind(60, 43, {}),
    "HARD_SWISH": _OperatorKind(117, 0, {}),
}


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    type: int
    buffer: int


@dataclass(frozen=True)
class Operator:
    kind: str
    inputs: tuple[int, ...]  # -1: an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, int | float | tuple[int, ...]]


@dataclass
class Graph:
    """One subgraph under construction: add tensors and operators, then ``serialize``."""

    tensors: list[Tensor] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    metadata: dict[str, int] = field(default_factory=dict)

    def constant(self, name: str, array: np.ndarray) -> int:
        """A float32 or int32 constant tensor with its own buffer; returns the tensor index."""
        array = np.asarray(array)
        dtype = np.dtype("<f4") if array.dtype.kind == "f" else np.dtype("<i4")
        self.buffers.append(np.ascontiguousarray(array, dtype).tobytes())
        return self._tensor(name, array.shape, _TYPES[dtype], len(self.buffers) - 1)

    def activation(self, name: str, shape: tuple[int, ...]) -> int:
        """A float32 tensor computed at run time (no data); returns the tensor index."""
        return self._tensor(name, shape, _TYPES[np.dtype("<f4")], 0)

    def operator(self, kind: str, inputs: list[int], outputs: list[int], **options: int | float | tuple) -> None:
        if kind not in OPERATORS or not set(options) <= set(OPERATORS[kind].options):
            raise ExportError(f"the TFLite writer has no operator {kind} with options {sorted(options)}")
        self.operators.append(Operator(kind, tuple(inputs), tuple(outputs), options))

    def add_metadata(self, name: str, data: bytes) -> int:
        """Store ``data`` in a new buffer named by a metadata entry; returns the buffer index."""
        self.buffers.append(bytes(data))
        self.metadata[name] = len(self.buffers) - 1
        return self.metadata[name]

    def _tensor(self, name: str, shape: tuple[int, ...], type_: int, buffer: int) -> int:
        self.tensors.append(Tensor(name, tuple(int(d) for d in shape), type_, buffer))
        return len(self.tensors) - 1


def serialize(graph: Graph, description: str = "rankcast") -> bytes:
    """The .tflite bytes of ``graph`` (schema version 3)."""
    builder = flatbuffers.Builder(sum(len(data) + _DATA_ALIGNMENT for data in graph.buffers) + 65536)
    buffers = [_buffer(builder, data) for data in graph.buffers]
    kinds = sorted({op.kind for op in graph.operators}, key=lambda kind: OPERATORS[kind].builtin_code)
    subgraph = _subgraph(builder, graph, kinds)
    codes = [_operator_code(builder, OPERATORS[kind].builtin_code) for kind in kinds]
    metadata = [_metadata(builder, name, buffer) for name, buffer in graph.metadata.items()]
    text = builder.CreateString(description)
    offsets = [_offsets(builder, codes), _offsets(builder, [subgraph]), _offsets(builder, buffers),
               _offsets(builder, metadata)]
    builder.StartObject(7)  # Model
    builder.PrependUint32Slot(0, 3, None)  # version
    builder.PrependUOffsetTRelativeSlot(1, offsets[0], 0)
    builder.PrependUOffsetTRelativeSlot(2, offsets[1], 0)
    builder.PrependUOffsetTRelativeSlot(3, text, 0)
    builder.PrependUOffsetTRelativeSlot(4, offsets[2], 0)
    builder.PrependUOffsetTRelativeSlot(6, offsets[3], 0)
    builder.Finish(builder.EndObject(), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _buffer(builder: flatbuffers.Builder, data: bytes) -> int:
    vector = None
    if data:
        builder.Prep(_DATA_ALIGNMENT, len(data))  # the bytes then start on a 16-byte boundary of the file
        vector = builder.CreateByteVector(data)
    builder.StartObject(1)
    if vector is not None:
        builder.PrependUOffsetTRelativeSlot(0, vector, 0)
    return builder.EndObject()


def _subgraph(builder: flatbuffers.Builder, graph: Graph, kinds: list[str]) -> int:
    tensors = [_tensor(builder, tensor) for tensor in graph.tensors]
    operators = [_operator(builder, op, kinds.index(op.kind)) for op in graph.operators]
    vectors = [_offsets(builder, tensors), _ints(builder, graph.inputs), _ints(builder, graph.outputs),
               _offsets(builder, operators)]
    name = builder.CreateString("main")
    builder.StartObject(5)
    for slot, vector in enumerate(vectors + [name]):
        builder.PrependUOffsetTRelativeSlot(slot, vector, 0)
    return builder.EndObject()


def _tensor(builder: flatbuffers.Builder, tensor: Tensor) -> int:
    shape = _ints(builder, tensor.shape)
    name = builder.CreateString(tensor.name)
    builder.StartObject(4)
    builder.PrependUOffsetTRelativeSlot(0, shape, 0)
    builder.PrependInt8Slot(1, tensor.type, None)
    builder.PrependUint32Slot(2, tensor.buffer, None)
    builder.PrependUOffsetTRelativeSlot(3, name, 0)
    return builder.EndObject()


def _operator(builder: flatbuffers.Builder, op: Operator, opcode_index: int) -> int:
    kind = OPERATORS[op.kind]
    inputs, outputs = _ints(builder, op.inputs), _ints(builder, op.outputs)
    options = _options(builder, kind, op.options) if kind.options_type else None
    builder.StartObject(5)
    builder.PrependUint32Slot(0, opcode_index, None)
    builder.PrependUOffsetTRelativeSlot(1, inputs, 0)
    builder.PrependUOffsetTRelativeSlot(2, outputs, 0)
    if options is not None:
        builder.PrependUint8Slot(3, kind.options_type, None)
        builder.PrependUOffsetTRelativeSlot(4, options, 0)
    return builder.EndObject()


def _options(builder: flatbuffers.Builder, kind: _OperatorKind, values: dict) -> int:
    vectors = {name: _ints(builder, value) for name, value in values.items() if kind.options[name][1] == "v"}
    builder.StartObject(max((slot for slot, _ in kind.options.values()), default=-1) + 1)
    for name, value in values.items():
        slot, code = kind.options[name]
        if code == "v":
            builder.PrependUOffsetTRelativeSlot(slot, vectors[name], 0)
        else:
            {"b": builder.PrependInt8Slot, "i": builder.PrependInt32Slot, "f": builder.PrependFloat32Slot}[code](
                slot, value, None
            )
    return builder.EndObject()


def _operator_code(builder: flatbuffers.Builder, code: int) -> int:
    builder.StartObject(4)
    builder.PrependInt8Slot(0, min(code, 127), None)  # deprecated_builtin_code, read by old runtimes
    builder.PrependInt32Slot(2, 1, None)  # version
    builder.PrependInt32Slot(3, code, None)  # builtin_code
    return builder.EndObject()


def _metadata(builder: flatbuffers.Builder, name: str, buffer: int) -> int:
    text = builder.CreateString(name)
    builder.StartObject(2)
    builder.PrependUOffsetTRelativeSlot(0, text, 0)
    builder.PrependUint32Slot(1, buffer, None)
    return builder.EndObject()


def _ints(builder: flatbuffers.Builder, values: tuple[int, ...] | list[int]) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependInt32(int(value))
    return builder.EndVector()


def _offsets(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()
