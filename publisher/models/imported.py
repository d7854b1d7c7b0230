"""A trainable torch module built from a float32 .tflite file's graph and weights, whatever made the file.

``import_tflite(data)`` reads the first subgraph (codec.tflite_graph) and runs its operators in order
on torch tensors in the file's own layout (NHWC for images, as Keras and TensorFlow's converter make
them), so the module takes the inputs the device's interpreter takes. Each CONV_2D, DEPTHWISE_CONV_2D
and FULLY_CONNECTED operator becomes an ``nn.Conv2d`` or ``nn.Linear`` named ``op<N>`` (N: the
operator's index) holding the file's float32 weights in PyTorch's layout; that is exactly how
``codec.tflite_graph.graph_binding`` names and lays out the buffers devices patch, so an update
trained on this module applies to the file bit for bit. Every other constant is a frozen buffer.
A SOFTMAX that produces the graph's output is left out of ``forward`` (training wants logits; the
arg-max, and so the accuracy, is the same); ``ends_in_softmax`` says so. Operators outside the
list below are refused by name, all at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec.errors import FormatError
from codec.tflite_flatbuffer import Table
from codec.tflite_graph import CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, Graph, Operator, is_constant, parse_graph
from codec.tflite_model import FLOAT32, TFLiteModel, parse_tflite
from publisher.errors import ModelError

INT32 = 2  # TensorType.INT32
SAME = 0  # Padding.SAME
NAMES = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE",
    9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 21: "RELU6", 22: "RESHAPE",
    25: "SOFTMAX", 28: "TANH", 34: "PAD", 36: "GATHER", 39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 42: "DIV",
    45: "STRIDED_SLICE", 53: "CAST", 60: "PADV2", 77: "SHAPE", 81: "REDUCE_PROD", 83: "PACK", 114: "QUANTIZE",
    117: "HARD_SWISH",
}
#: Operators that compute shapes at run time: a converter writes them for a free batch dimension.
_SHAPE_ARITHMETIC = {36, 45, 53, 77, 81, 83}
_ACTIVATIONS: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    0: lambda x: x, 1: F.relu, 2: lambda x: x.clamp(-1.0, 1.0), 3: F.relu6, 4: torch.tanh,
}
Values = list[torch.Tensor | None]
Step = Callable[["ImportedModel", Values], torch.Tensor]


class ImportedModel(nn.Module):
    """The graph of a .tflite file as a torch module (see the module docstring)."""

    def __init__(self, graph: Graph, model: TFLiteModel, data: memoryview) -> None:
        super().__init__()
        self.input, self.output = graph.inputs[0], graph.outputs[0]
        self.input_shape = model.tensors[self.input].shape
        self.steps: list[tuple[tuple[int, ...], int, Step]] = []
        last = graph.operators[-1] if graph.operators else None
        self.ends_in_softmax = last is not None and last.code == 25 and last.outputs[0] == self.output
        reader = _Reader(self, model, data)
        for operator in graph.operators[:-1] if self.ends_in_softmax else graph.operators:
            self.steps.append((operator.inputs, operator.outputs[0], _LOWERINGS[operator.code](operator, reader)))
        self.result = graph.operators[-1].inputs[0] if self.ends_in_softmax else self.output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {self.input: x}
        for inputs, output, step in self.steps:
            values[output] = step(self, [values.get(i) for i in inputs])
        return values[self.result]


def import_tflite(data: bytes) -> ImportedModel:
    """The module of a float32 .tflite file; raises ModelError naming what it cannot import."""
    view = memoryview(data)
    try:
        model, graph = parse_tflite(view), parse_graph(view)
    except FormatError as exc:
        raise ModelError(f"not a TFLite file rankcast can read: {exc}") from None
    _check(graph, model)
    return ImportedModel(graph, model, view).eval()


def operator_name(operator: Operator) -> str:
    """The operator's builtin name (or its custom name)."""
    return operator.custom or NAMES.get(operator.code, f"builtin operator {operator.code}")


def _check(graph: Graph, model: TFLiteModel) -> None:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(f"the TFLite graph has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
                         "import-tflite takes one of each")
    io = [model.tensors[graph.inputs[0]], model.tensors[graph.outputs[0]]]
    if any(tensor.type != FLOAT32 for tensor in io):
        raise ModelError("the TFLite model is quantised (its input or output is not float32); rankcast updates "
                         "float32 files: convert without optimisations")
    unsupported = sorted({operator_name(op) for op in graph.operators if op.custom or op.code not in _LOWERINGS})
    if unsupported:
        hint = ("; SHAPE, GATHER, STRIDED_SLICE and PACK compute a free batch size at run time: convert the model "
                "with a fixed batch (keras.Input(batch_size=1))" if any(
                    op.code in _SHAPE_ARITHMETIC for op in graph.operators) else "")
        raise ModelError(f"cannot import TFLite operators {', '.join(unsupported)} (docs/tflite.md lists what "
                         f"import-tflite takes){hint}")


@dataclass
class _Reader:
    """Constants, shapes and options of the file, and the modules it registers on the model."""

    module: ImportedModel
    model: TFLiteModel
    data: memoryview

    def shape(self, tensor: int) -> tuple[int, ...]:
        return self.model.tensors[tensor].shape

    def floats(self, tensor: int) -> np.ndarray:
        if not is_constant(self.model, tensor):
            raise ModelError(f"tensor {tensor} ({self.model.tensors[tensor].name!r}) is not a float32 constant")
        span = self.model.data_of(tensor)
        return np.frombuffer(self.data[span.offset : span.end], "<f4").reshape(self.shape(tensor)).copy()

    def ints(self, tensor: int) -> list[int]:
        entry = self.model.tensors[tensor]
        span = self.model.data_of(tensor)
        if entry.type != INT32 or span.length != 4 * math.prod(entry.shape):
            raise ModelError(f"tensor {tensor} ({entry.name!r}) is not an int32 constant")
        return [int(v) for v in np.frombuffer(self.data[span.offset : span.end], "<i4")]

    def constant_inputs(self, operator: Operator) -> None:
        """Register the operator's float32 constant inputs as frozen buffers the steps read by tensor number."""
        for tensor in operator.inputs:
            if tensor >= 0 and is_constant(self.model, tensor) and not hasattr(self.module, f"c{tensor}"):
                self.module.register_buffer(f"c{tensor}", torch.from_numpy(self.floats(tensor)), persistent=False)


def _option(operator: Operator, slot: int, fmt: str, default: int | float) -> int | float:
    table: Table | None = operator.options
    return default if table is None else table.scalar(slot, fmt, default)


def _value(model: ImportedModel, values: Values, inputs: tuple[int, ...], position: int) -> torch.Tensor:
    found = values[position]
    return getattr(model, f"c{inputs[position]}") if found is None else found


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one dimension: (before, after), the odd one after."""
    extent = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def _spatial_padding(operator: Operator, shape: tuple[int, ...], kernel: tuple[int, int],
                     stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for an NHWC input of ``shape``."""
    if _option(operator, 0, "<b", SAME) != SAME:
        return (0, 0, 0, 0)
    top, bottom = _same_padding(shape[1], kernel[0], stride[0], dilation[0])
    left, right = _same_padding(shape[2], kernel[1], stride[1], dilation[1])
    return (left, right, top, bottom)


def _conv(operator: Operator, reader: _Reader) -> Step:
    """CONV_2D and DEPTHWISE_CONV_2D as an nn.Conv2d on NCHW, between two transposes."""
    depthwise = operator.code == DEPTHWISE_CONV_2D
    stored = reader.floats(operator.inputs[1])
    kernel = np.transpose(stored, (3, 0, 1, 2)) if depthwise else np.transpose(stored, (0, 3, 1, 2))
    channels = reader.shape(operator.inputs[0])[3]
    slots = (1, 2, 5, 6, 4) if depthwise else (1, 2, 4, 5, 3)  # stride w, h; dilation w, h; activation
    stride = (int(_option(operator, slots[1], "<i", 1)), int(_option(operator, slots[0], "<i", 1)))
    dilation = (int(_option(operator, slots[3], "<i", 1)), int(_option(operator, slots[2], "<i", 1)))
    has_bias = len(operator.inputs) > 2 and operator.inputs[2] >= 0
    layer = nn.Conv2d(channels, kernel.shape[0], kernel.shape[2:], stride, 0, dilation,
                      groups=channels if depthwise else 1, bias=has_bias)
    _load(layer, kernel, reader.floats(operator.inputs[2]) if has_bias else None)
    name = f"op{operator.index}"
    setattr(reader.module, name, layer)
    padding = _spatial_padding(operator, reader.shape(operator.inputs[0]), kernel.shape[2:], stride, dilation)
    activation = _ACTIVATIONS[int(_option(operator, slots[4], "<b", 0))]

    def step(model: ImportedModel, values: Values) -> torch.Tensor:
        x = F.pad(values[0].permute(0, 3, 1, 2), padding)
        return activation(getattr(model, name)(x)).permute(0, 2, 3, 1)

    return step


def _fully_connected(operator: Operator, reader: _Reader) -> Step:
    """FULLY_CONNECTED as an nn.Linear on the last dimension (the rest flattened unless keep_num_dims)."""
    weight = reader.floats(operator.inputs[1])
    has_bias = len(operator.inputs) > 2 and operator.inputs[2] >= 0
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias)
    _load(layer, weight, reader.floats(operator.inputs[2]) if has_bias else None)
    name = f"op{operator.index}"
    setattr(reader.module, name, layer)
    keep = bool(_option(operator, 2, "<B", 0))
    activation = _ACTIVATIONS[int(_option(operator, 0, "<b", 0))]

    def step(model: ImportedModel, values: Values) -> torch.Tensor:
        x = values[0] if keep else values[0].reshape(-1, weight.shape[1])
        return activation(getattr(model, name)(x))

    return step


def _load(layer: nn.Module, weight: np.ndarray, bias: np.ndarray | None) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(bias))


def _pool(operator: Operator, reader: _Reader) -> Step:
    """MAX_POOL_2D (padding with -inf) and AVERAGE_POOL_2D (padded cells not counted), as TFLite does."""
    stride = (int(_option(operator, 2, "<i", 1)), int(_option(operator, 1, "<i", 1)))
    kernel = (int(_option(operator, 4, "<i", 1)), int(_option(operator, 3, "<i", 1)))
    padding = _spatial_padding(operator, reader.shape(operator.inputs[0]), kernel, stride, (1, 1))
    activation = _ACTIVATIONS[int(_option(operator, 5, "<b", 0))]
    is_max = operator.code == 17

    def step(model: ImportedModel, values: Values) -> torch.Tensor:
        x = values[0].permute(0, 3, 1, 2)
        if is_max:
            pooled = F.max_pool2d(F.pad(x, padding, value=-math.inf), kernel, stride)
        else:
            ones = F.pad(torch.ones_like(x[:1, :1]), padding)
            pooled = F.avg_pool2d(F.pad(x, padding), kernel, stride) / F.avg_pool2d(ones, kernel, stride)
        return activation(pooled).permute(0, 2, 3, 1)

    return step


def _binary(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[Operator, _Reader], Step]:
    """ADD, SUB, MUL, DIV with numpy broadcasting and a fused activation."""

    def lower(operator: Operator, reader: _Reader) -> Step:
        reader.constant_inputs(operator)
        activation = _ACTIVATIONS[int(_option(operator, 0, "<b", 0))]
        inputs = operator.inputs
        return lambda model, values: activation(function(_value(model, values, inputs, 0),
                                                         _value(model, values, inputs, 1)))

    return lower


def _unary(function: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Operator, _Reader], Step]:
    return lambda operator, reader: lambda model, values: function(values[0])


def _reshape(operator: Operator, reader: _Reader) -> Step:
    """RESHAPE to the constant shape (its second input or its options), the batch following the input's."""
    if len(operator.inputs) > 1 and operator.inputs[1] >= 0:
        shape = reader.ints(operator.inputs[1])
    else:
        table = operator.options
        shape = list(table.ints(0, "<i")) if table is not None else []
    batch_first = len(shape) >= 2 and shape[0] in (1, -1) and reader.shape(operator.inputs[0])[:1] == (1,)
    return lambda model, values: values[0].reshape([values[0].shape[0], *shape[1:]] if batch_first else shape)


def _mean(operator: Operator, reader: _Reader) -> Step:
    rank = len(reader.shape(operator.inputs[0]))
    axes = [axis % rank for axis in reader.ints(operator.inputs[1])]
    keep = bool(_option(operator, 0, "<B", 0))
    return lambda model, values: values[0].mean(dim=axes, keepdim=keep)


def _concatenation(operator: Operator, reader: _Reader) -> Step:
    reader.constant_inputs(operator)
    axis = int(_option(operator, 0, "<i", 0)) % len(reader.shape(operator.outputs[0]))
    activation = _ACTIVATIONS[int(_option(operator, 1, "<b", 0))]
    inputs = operator.inputs
    return lambda model, values: activation(torch.cat(
        [_value(model, values, inputs, i) for i in range(len(inputs))], dim=axis))


def _pad(operator: Operator, reader: _Reader) -> Step:
    """PAD (zeros) and PADV2 (a constant value): per dimension (before, after), F.pad's order reversed."""
    pairs = reader.ints(operator.inputs[1])
    padding = [amount for dim in reversed(range(len(pairs) // 2)) for amount in pairs[2 * dim : 2 * dim + 2]]
    value = float(reader.floats(operator.inputs[2]).reshape(-1)[0]) if operator.code == 60 else 0.0
    return lambda model, values: F.pad(values[0], padding, value=value)


def _transpose(operator: Operator, reader: _Reader) -> Step:
    order = reader.ints(operator.inputs[1])
    return lambda model, values: values[0].permute(order)


def _softmax(operator: Operator, reader: _Reader) -> Step:
    beta = float(_option(operator, 0, "<f", 0.0))
    return lambda model, values: torch.softmax(values[0] * beta, dim=-1)


_LOWERINGS: dict[int, Callable[[Operator, _Reader], Step]] = {
    0: _binary(torch.add), 1: _pool, 2: _concatenation, CONV_2D: _conv, DEPTHWISE_CONV_2D: _conv,
    FULLY_CONNECTED: _fully_connected, 14: _unary(torch.sigmoid), 17: _pool, 18: _binary(torch.mul),
    19: _unary(F.relu), 21: _unary(F.relu6), 22: _reshape, 25: _softmax, 28: _unary(torch.tanh), 34: _pad,
    39: _transpose, 40: _mean, 41: _binary(torch.sub), 42: _binary(torch.div), 60: _pad,
    117: _unary(F.hardswish),
}
