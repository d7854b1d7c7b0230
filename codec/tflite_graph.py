"""The graph of a .tflite file: its operators, and the weights they name, for files rankcast did not write.

Reads the first subgraph's operators (builtin code, input and output tensors, options table), its
inputs and outputs, with the bounded reader of codec.tflite_flatbuffer. ``graph_binding`` binds the
float32 constant weights and biases of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED operator
under the names ``op<N>.weight`` and ``op<N>.bias`` (N: the operator's index), in PyTorch's layouts,
so a file made by any converter can be updated in place with no binding delivered beside it; a
buffer two operators share is bound once, at its first operator. Field numbers are those of the
TFLite schema (tensorflow/lite/schema/schema.fbs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from codec.errors import FormatError
from codec.tflite_binding import CONV_LAYOUT, DEPTHWISE_LAYOUT, Binding, BoundTensor
from codec.tflite_flatbuffer import Table, root_table
from codec.tflite_model import FLOAT32, TFLiteModel, parse_tflite

CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED = 3, 4, 9
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS = 1, 2
_CODE_DEPRECATED, _CODE_CUSTOM, _CODE_BUILTIN = 0, 1, 3
_SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS = 1, 2, 3
_OPERATOR_OPCODE, _OPERATOR_INPUTS, _OPERATOR_OUTPUTS, _OPERATOR_OPTIONS = 0, 1, 2, 4
#: How each weighted operator stores its kernel: the permutation from PyTorch's layout (codec.tflite_binding).
_KERNELS = {CONV_2D: CONV_LAYOUT, DEPTHWISE_CONV_2D: DEPTHWISE_LAYOUT, FULLY_CONNECTED: (0, 1)}


@dataclass(frozen=True)
class Operator:
    """One operator: its builtin code (or a custom op's name), tensors in and out (-1: absent), options."""

    index: int
    code: int
    custom: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Table | None


@dataclass(frozen=True)
class Graph:
    """The first subgraph: its operators in execution order, its input and output tensors."""

    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def parse_graph(data: bytes | memoryview) -> Graph:
    """The first subgraph's operators, inputs and outputs; raises FormatError."""
    view = memoryview(data)
    model = root_table(view)
    codes = [_operator_code(table) for table in model.tables(_MODEL_OPERATOR_CODES)]
    subgraphs = model.tables(_MODEL_SUBGRAPHS)
    if not subgraphs:
        raise FormatError("the TFLite model has no subgraph")
    operators = []
    for index, table in enumerate(subgraphs[0].tables(_SUBGRAPH_OPERATORS)):
        opcode = int(table.scalar(_OPERATOR_OPCODE, "<I", 0))
        if opcode >= len(codes):
            raise FormatError(f"operator {index} names operator code {opcode}; the file has {len(codes)}")
        operators.append(Operator(index, *codes[opcode], table.ints(_OPERATOR_INPUTS, "<i"),
                                  table.ints(_OPERATOR_OUTPUTS, "<i"), table.table(_OPERATOR_OPTIONS)))
    graph = subgraphs[0]
    return Graph(tuple(operators), graph.ints(_SUBGRAPH_INPUTS, "<i"), graph.ints(_SUBGRAPH_OUTPUTS, "<i"))


def graph_binding(data: bytes | memoryview) -> Binding:
    """The weights and biases of the file's conv, depthwise and fully connected operators (module docstring)."""
    model, graph = parse_tflite(data), parse_graph(data)
    bound: list[BoundTensor] = []
    seen: set[int] = set()
    for operator in graph.operators:
        layout = _KERNELS.get(operator.code)
        if layout is None:
            continue
        for slot, role, permutation in ((1, "weight", layout), (2, "bias", (0,))):
            if len(operator.inputs) <= slot or not is_constant(model, operator.inputs[slot]):
                continue
            tensor = operator.inputs[slot]
            stored = model.tensors[tensor].shape
            if len(stored) != len(permutation) or model.tensors[tensor].buffer in seen:
                continue
            seen.add(model.tensors[tensor].buffer)
            logical = [0] * len(stored)
            for position, axis in enumerate(permutation):
                logical[axis] = stored[position]
            bound.append(BoundTensor(f"op{operator.index}.{role}", tensor, model.tensors[tensor].buffer,
                                     tuple(logical), permutation))
    return Binding(tuple(bound))


def is_constant(model: TFLiteModel, tensor: int) -> bool:
    """Whether ``tensor`` is a float32 tensor whose buffer holds all of its values."""
    if not 0 <= tensor < len(model.tensors):
        return False
    entry = model.tensors[tensor]
    if entry.type != FLOAT32 or entry.buffer >= len(model.buffers) or not all(d >= 1 for d in entry.shape):
        return False
    return model.buffers[entry.buffer].length == 4 * math.prod(entry.shape) > 0


def _operator_code(table: Table) -> tuple[int, str]:
    """(builtin code, custom name): the larger of the deprecated int8 code and the int32 one, as TFLite reads it."""
    deprecated = int(table.scalar(_CODE_DEPRECATED, "<b", 0))
    return max(deprecated, int(table.scalar(_CODE_BUILTIN, "<i", 0))), table.string(_CODE_CUSTOM)
