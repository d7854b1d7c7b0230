"""Lowering PyTorch layers to TFLite operators, with the layout bookkeeping, in numpy only.

Values keep their logical (PyTorch) shape. A 4-D value (N, C, H, W) is stored NHWC in the TFLite
graph, so the model input, given NCHW like PyTorch's, is transposed once at the start, and a 4-D
output is transposed back. Flatten transposes NHWC back to NCHW before reshaping, so the following
Linear sees PyTorch's element order and keeps its weights as they are; any reshape does the same, and
a dimension given in PyTorch's terms (mean, concatenation, padding) is mapped to its stored axis.
Kernels are stored in TFLite's layouts and the binding records each permutation: Linear [out, in] as
is, Conv2d OIHW as OHWI, depthwise Conv2d (C·M, 1, H, W) as [1, H, W, C·M]; a channel affine's scale
and shift as 1-D tensors on the channel axis, which NHWC stores last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from codec.tflite_binding import CONV_LAYOUT, DEPTHWISE_LAYOUT, METADATA_NAME, Binding, BoundTensor
from publisher.errors import ExportError, UnsupportedLayerError
from publisher.tflite.writer import SAME, VALID, Graph, serialize

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
_LOWEST = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class Value:
    """A tensor of the graph and its logical (PyTorch) shape."""

    tensor: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Window:
    """A 2-D sliding window: kernel, stride, dilation and explicit (top, bottom, left, right) padding."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        top, bottom, left, right = self.padding
        span_h, span_w = (d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel, strict=True))
        return ((height + top + bottom - span_h) // self.stride[0] + 1,
                (width + left + right - span_w) // self.stride[1] + 1)

    def is_tflite_same(self) -> bool:
        """True if TFLite's SAME padding pads exactly like ``padding`` (stride 1 only)."""
        return self.stride == (1, 1) and self.padding == same_padding(self.kernel, self.dilation)


def same_padding(kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) that keep the size at stride 1; the odd pixel goes after, as in
    PyTorch's padding="same" and TFLite's SAME."""
    (total_h, total_w) = (d * (k - 1) for d, k in zip(dilation, kernel, strict=True))
    return total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2


@dataclass
class Lowering:
    """Builds one TFLite graph layer by layer and the binding of its weights."""

    graph: Graph = field(default_factory=Graph)
    bound: list[BoundTensor] = field(default_factory=list)

    def input(self, name: str, shape: tuple[int, ...]) -> Value:
        """The model input, fed in PyTorch's layout (2-D N×F or 4-D NCHW)."""
        if len(shape) not in (2, 4) or not all(isinstance(d, int) and d >= 1 for d in shape):
            raise ExportError(f"input shape {shape}: give N,F or N,C,H,W with positive sizes")
        tensor = self.graph.activation(name, shape)
        self.graph.inputs.append(tensor)
        if len(shape) == 4:
            tensor = self._transpose(f"{name}_nhwc", tensor, TO_NHWC, _stored(shape))
        return Value(tensor, tuple(shape))

    def output(self, value: Value) -> None:
        """Mark the model output, given back in PyTorch's layout."""
        tensor = self._transpose("output_nchw", value.tensor, TO_NCHW, value.shape) if len(value.shape) == 4 \
            else value.tensor
        self.graph.outputs.append(tensor)

    def linear(self, name: str, x: Value, weight: np.ndarray, bias: np.ndarray | None) -> Value:
        if len(x.shape) != 2:
            raise UnsupportedLayerError([f"{name} (Linear): input of shape {x.shape}; only N×F inputs are exported"])
        inputs = [x.tensor, self._weight(f"{name}.weight", weight, (0, 1)), self._bias(name, bias, weight.shape[0])]
        return self._op("FULLY_CONNECTED", name, inputs, (x.shape[0], weight.shape[0]))

    def conv2d(self, name: str, x: Value, weight: np.ndarray, bias: np.ndarray | None, window: Window,
               groups: int) -> Value:
        """Conv2d with groups 1 (CONV_2D) or groups == input channels (DEPTHWISE_CONV_2D)."""
        self._need_4d(name, "Conv2d", x)
        x, padding, window = self._pad(name, x, window, allow_same=True)
        height, width = window.output_size(*x.shape[2:])
        depthwise = groups > 1
        layout = DEPTHWISE_LAYOUT if depthwise else CONV_LAYOUT
        inputs = [x.tensor, self._weight(f"{name}.weight", weight, layout), self._bias(name, bias, weight.shape[0])]
        options = dict(padding=padding, stride_h=window.stride[0], stride_w=window.stride[1],
                       dilation_h_factor=window.dilation[0], dilation_w_factor=window.dilation[1])
        if depthwise:
            options["depth_multiplier"] = weight.shape[0] // groups
        shape = (x.shape[0], weight.shape[0], height, width)
        return self._op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", name, inputs, shape, **options)

    def pool2d(self, name: str, x: Value, window: Window, average: bool) -> Value:
        """Max or average pooling; an average pool's padding counts as zeros (count_include_pad), a max pool's
        as the lowest float32, which no input is below (PyTorch pads with -inf)."""
        self._need_4d(name, "AvgPool2d" if average else "MaxPool2d", x)
        x, padding, window = self._pad(name, x, window, allow_same=False, fill=0.0 if average else _LOWEST)
        shape = (x.shape[0], x.shape[1], *window.output_size(*x.shape[2:]))
        return self._op("AVERAGE_POOL_2D" if average else "MAX_POOL_2D", name, [x.tensor], shape, padding=padding,
                        stride_h=window.stride[0], stride_w=window.stride[1],
                        filter_height=window.kernel[0], filter_width=window.kernel[1])

    def relu(self, name: str, x: Value, six: bool = False) -> Value:
        return self.unary("RELU6" if six else "RELU", name, x)

    def unary(self, kind: str, name: str, x: Value) -> Value:
        """An elementwise operator of one input: RELU, RELU6, HARD_SWISH, LOGISTIC or TANH."""
        return self._op(kind, name, [x.tensor], x.shape)

    def binary(self, kind: str, name: str, a: Value | float, b: Value | float) -> Value:
        """ADD, SUB, MUL or DIV of two values of one rank (broadcast like PyTorch) or a value and a number."""
        shapes = [v.shape for v in (a, b) if isinstance(v, Value)]
        if len(shapes) == 2 and len(shapes[0]) != len(shapes[1]):
            raise UnsupportedLayerError([f"{name} ({kind.lower()}): shapes {shapes[0]} and {shapes[1]} have "
                                         "different ranks; broadcast only between tensors of one rank"])
        shape = tuple(np.broadcast_shapes(*shapes))
        inputs = [v.tensor if isinstance(v, Value) else self.graph.constant(
            f"{name}_{side}", np.array([v], np.float32)) for side, v in (("a", a), ("b", b))]
        return self._op(kind, name, inputs, shape)

    def add(self, name: str, a: Value, b: Value) -> Value:
        return self.binary("ADD", name, a, b)

    def hardsigmoid(self, name: str, x: Value) -> Value:
        """relu6(x + 3) / 6, as PyTorch defines it (TFLite has no such operator)."""
        shifted = self.unary("RELU6", f"{name}_relu6", self.binary("ADD", f"{name}_plus3", x, 3.0))
        return self.binary("DIV", name, shifted, 6.0)

    def silu(self, name: str, x: Value) -> Value:
        """x · sigmoid(x)."""
        return self.binary("MUL", name, x, self.unary("LOGISTIC", f"{name}_sigmoid", x))

    def affine(self, name: str, x: Value, weight: np.ndarray, bias: np.ndarray) -> Value:
        """x · weight + bias per channel (dimension 1), the channel being TFLite's last axis."""
        if len(x.shape) not in (2, 4) or x.shape[1] != len(weight):
            raise UnsupportedLayerError([f"{name} (channel affine): input of shape {x.shape}; only N×C or NCHW "
                                         f"with {len(weight)} channels"])
        scaled = self._op("MUL", f"{name}_scaled", [x.tensor, self._weight(f"{name}.weight", weight, (0,))], x.shape)
        return self._op("ADD", name, [scaled.tensor, self._weight(f"{name}.bias", bias, (0,))], x.shape)

    def flatten(self, name: str, x: Value) -> Value:
        """Flatten from dimension 1, in PyTorch's (NCHW) element order."""
        return x if len(x.shape) == 2 else self.reshape(name, x, (x.shape[0], math.prod(x.shape[1:])))

    def reshape(self, name: str, x: Value, shape: tuple[int, ...]) -> Value:
        """Any reshape in PyTorch's element order: through NCHW when the layout would reorder elements."""
        if math.prod(shape) != math.prod(x.shape) or shape[0] != x.shape[0]:
            raise UnsupportedLayerError([f"{name} (reshape): {x.shape} to {shape}; only reshapes that keep the "
                                         "batch dimension"])
        if tuple(shape) == x.shape:
            return x
        tensor = x.tensor
        if len(x.shape) == 4 and not _keeps_order(x.shape, TO_NCHW, TO_NHWC):
            tensor = self._transpose(f"{name}_nchw", tensor, TO_NCHW, x.shape)
        after_nchw = len(shape) == 4 and not _keeps_order(shape, TO_NHWC, (0, 1, 2, 3))
        target = tuple(shape) if after_nchw or len(shape) != 4 else _stored(shape)
        new_shape = (-1, *target[1:])
        shape_tensor = self.graph.constant(f"{name}_shape", np.array(new_shape, np.int32))
        reshaped = self._op("RESHAPE", f"{name}_nchw" if after_nchw else name, [tensor, shape_tensor], target,
                            new_shape=new_shape)
        if not after_nchw:
            return Value(reshaped.tensor, tuple(shape))
        return Value(self._transpose(name, reshaped.tensor, TO_NHWC, _stored(shape)), tuple(shape))

    def mean(self, name: str, x: Value, dims: tuple[int, ...], keepdim: bool) -> Value:
        """The mean over PyTorch dimensions ``dims`` (global average pooling is dims (2, 3))."""
        dims = tuple(sorted({d % len(x.shape) for d in dims}))
        axes = self.graph.constant(f"{name}_axes", np.array([_stored_axis(len(x.shape), d) for d in dims], np.int32))
        kept = tuple(1 if d in dims else size for d, size in enumerate(x.shape))
        if keepdim:
            return self._op("MEAN", name, [x.tensor, axes], kept, keep_dims=True)
        remaining = tuple(size for d, size in enumerate(x.shape) if d not in dims)
        order = [d for d in (TO_NHWC if len(x.shape) == 4 else range(len(x.shape))) if d not in dims]
        if order == sorted(order):
            return self._op("MEAN", name, [x.tensor, axes], remaining, keep_dims=False)
        reduced = self._op("MEAN", f"{name}_keep", [x.tensor, axes], kept, keep_dims=True)
        return self.reshape(name, reduced, remaining)

    def concat(self, name: str, values: list[Value], dim: int) -> Value:
        """torch.cat along PyTorch dimension ``dim``."""
        rank = len(values[0].shape)
        dim %= rank
        if any(len(v.shape) != rank or v.shape[:dim] + v.shape[dim + 1:] != values[0].shape[:dim] +
               values[0].shape[dim + 1:] for v in values):
            raise UnsupportedLayerError([f"{name} (cat): shapes {[v.shape for v in values]} do not line up"])
        shape = (*values[0].shape[:dim], sum(v.shape[dim] for v in values), *values[0].shape[dim + 1:])
        return self._op("CONCATENATION", name, [v.tensor for v in values], shape, axis=_stored_axis(rank, dim))

    def pad(self, name: str, x: Value, pads: list[tuple[int, int]]) -> Value:
        """Zero padding: (before, after) for each PyTorch dimension."""
        if any(before < 0 or after < 0 for before, after in pads):
            raise UnsupportedLayerError([f"{name} (pad): negative padding (cropping)"])
        stored = [pads[d] for d in (TO_NHWC if len(x.shape) == 4 else range(len(x.shape)))]
        paddings = self.graph.constant(f"{name}_paddings", np.array(stored, np.int32))
        shape = tuple(size + before + after for size, (before, after) in zip(x.shape, pads, strict=True))
        return self._op("PAD", name, [x.tensor, paddings], shape)

    def softmax(self, name: str, x: Value, dim: int) -> Value:
        """Softmax over the features of N×F or the channels of NCHW (TFLite's last axis)."""
        if dim % len(x.shape) != 1:
            raise UnsupportedLayerError([f"{name} (Softmax): dim {dim} of a {len(x.shape)}-D input; only dim 1"])
        return self._op("SOFTMAX", name, [x.tensor], x.shape, beta=1.0)

    def stand_in(self, name: str, shape: tuple[int, ...]) -> Value:
        """A tensor no operator computes, for a call that cannot be exported, so the calls after it are checked."""
        return Value(self.graph.activation(name, _stored(shape)), tuple(shape))

    def finish(self) -> tuple[bytes, Binding]:
        """The .tflite bytes, with the binding stored as "rankcast.binding" metadata, and the binding."""
        binding = Binding(tuple(self.bound))
        self.graph.add_metadata(METADATA_NAME, binding.to_bytes())
        return serialize(self.graph), binding

    def _weight(self, name: str, logical: np.ndarray, permutation: tuple[int, ...]) -> int:
        tensor = self.graph.constant(name, np.transpose(np.asarray(logical, np.float32), permutation))
        buffer = self.graph.tensors[tensor].buffer
        self.bound.append(BoundTensor(name, tensor, buffer, tuple(logical.shape), permutation))
        return tensor

    def _bias(self, name: str, bias: np.ndarray | None, channels: int) -> int:
        if bias is None:  # TFLite kernels want a bias: a zero constant that no update touches
            return self.graph.constant(f"{name}.zero_bias", np.zeros(channels, np.float32))
        return self._weight(f"{name}.bias", bias, (0,))

    def _pad(self, name: str, x: Value, window: Window, allow_same: bool,
             fill: float = 0.0) -> tuple[Value, int, Window]:
        """The input, TFLite padding and window to use: VALID, SAME, or an explicit PAD (PADV2 for a
        ``fill`` other than zero) then VALID."""
        if window.padding == (0, 0, 0, 0) or (allow_same and window.is_tflite_same()):
            return x, VALID if window.padding == (0, 0, 0, 0) else SAME, window
        top, bottom, left, right = window.padding
        paddings = self.graph.constant(f"{name}_paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]]))
        shape = (x.shape[0], x.shape[1], x.shape[2] + top + bottom, x.shape[3] + left + right)
        inputs = [x.tensor, paddings]
        if fill != 0.0:
            inputs.append(self.graph.constant(f"{name}_fill", np.array(fill, np.float32)))
        padded = self._op("PADV2" if fill != 0.0 else "PAD", f"{name}_padded", inputs, shape)
        return padded, VALID, replace(window, padding=(0,) * 4)

    def _transpose(self, name: str, tensor: int, permutation: tuple[int, ...], shape: tuple[int, ...]) -> int:
        """A TRANSPOSE op at a layout change; returns its output tensor, stored as ``shape``."""
        perm = self.graph.constant(f"{name}_perm", np.array(permutation, np.int32))
        output = self.graph.activation(name, shape)
        self.graph.operator("TRANSPOSE", [tensor, perm], [output])
        return output

    def _op(self, kind: str, name: str, inputs: list[int], shape: tuple[int, ...], **options: object) -> Value:
        tensor = self.graph.activation(name, _stored(shape))
        self.graph.operator(kind, inputs, [tensor], **options)
        return Value(tensor, tuple(shape))

    @staticmethod
    def _need_4d(name: str, layer: str, x: Value) -> None:
        if len(x.shape) != 4:
            raise UnsupportedLayerError([f"{name} ({layer}): input of shape {x.shape}; only NCHW inputs are exported"])


def _stored(logical: tuple[int, ...]) -> tuple[int, ...]:
    """The TFLite shape of a logical shape: NCHW is stored NHWC, anything else as is."""
    return tuple(logical[axis] for axis in TO_NHWC) if len(logical) == 4 else tuple(logical)


def _stored_axis(rank: int, dim: int) -> int:
    """Where PyTorch dimension ``dim`` of a value of this rank is in the TFLite tensor."""
    return TO_NHWC.index(dim) if rank == 4 else dim


def _keeps_order(shape: tuple[int, ...], permutation: tuple[int, ...], stored_as: tuple[int, ...]) -> bool:
    """True when transposing a tensor of logical ``shape`` stored by ``stored_as`` with ``permutation``
    moves no element: the axes longer than one keep their order."""
    stored = [shape[axis] for axis in stored_as]
    moved = [axis for axis in permutation if stored[axis] > 1]
    return moved == sorted(moved)
