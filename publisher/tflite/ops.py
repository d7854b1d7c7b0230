"""Lowering PyTorch layers to TFLite operators, with the layout bookkeeping, in numpy only.

Values keep their logical (PyTorch) shape. A 4-D value (N, C, H, W) is stored NHWC in the TFLite
graph, so the model input, given NCHW like PyTorch's, is transposed once at the start, and a 4-D
output is transposed back. Flatten transposes NHWC back to NCHW before reshaping, so the following
Linear sees PyTorch's element order and keeps its weights as they are. Kernels are stored in TFLite's
layouts and the binding records each permutation: Linear [out, in] as is, Conv2d OIHW as OHWI,
depthwise Conv2d (C·M, 1, H, W) as [1, H, W, C·M].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from codec.tflite_binding import CONV_LAYOUT, DEPTHWISE_LAYOUT, METADATA_NAME, Binding, BoundTensor
from publisher.errors import ExportError, UnsupportedLayerError
from publisher.tflite.writer import SAME, VALID, Graph, serialize

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


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
        """Max or average pooling; an average pool's padding counts as zeros (count_include_pad)."""
        self._need_4d(name, "AvgPool2d" if average else "MaxPool2d", x)
        if not average and window.padding != (0, 0, 0, 0):
            raise UnsupportedLayerError([f"{name} (MaxPool2d): padding (PyTorch pads with -inf, PAD with zeros)"])
        x, padding, window = self._pad(name, x, window, allow_same=False)
        shape = (x.shape[0], x.shape[1], *window.output_size(*x.shape[2:]))
        return self._op("AVERAGE_POOL_2D" if average else "MAX_POOL_2D", name, [x.tensor], shape, padding=padding,
                        stride_h=window.stride[0], stride_w=window.stride[1],
                        filter_height=window.kernel[0], filter_width=window.kernel[1])

    def relu(self, name: str, x: Value, six: bool = False) -> Value:
        return self._op("RELU6" if six else "RELU", name, [x.tensor], x.shape)

    def add(self, name: str, a: Value, b: Value) -> Value:
        if a.shape != b.shape:
            raise UnsupportedLayerError([f"{name} (add): shapes {a.shape} and {b.shape} differ (no broadcasting)"])
        return self._op("ADD", name, [a.tensor, b.tensor], a.shape)

    def flatten(self, name: str, x: Value) -> Value:
        """Flatten from dimension 1, in PyTorch's (NCHW) element order."""
        if len(x.shape) == 2:
            return x
        nchw = self._transpose(f"{name}_nchw", x.tensor, TO_NCHW, x.shape)
        flat = math.prod(x.shape[1:])
        shape_tensor = self.graph.constant(f"{name}_shape", np.array([-1, flat], np.int32))
        return self._op("RESHAPE", name, [nchw, shape_tensor], (x.shape[0], flat), new_shape=(-1, flat))

    def softmax(self, name: str, x: Value, dim: int) -> Value:
        """Softmax over the features of N×F or the channels of NCHW (TFLite's last axis)."""
        if dim % len(x.shape) != 1:
            raise UnsupportedLayerError([f"{name} (Softmax): dim {dim} of a {len(x.shape)}-D input; only dim 1"])
        return self._op("SOFTMAX", name, [x.tensor], x.shape, beta=1.0)

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

    def _pad(self, name: str, x: Value, window: Window, allow_same: bool) -> tuple[Value, int, Window]:
        """The input, TFLite padding and window to use: VALID, SAME, or an explicit PAD op then VALID."""
        if window.padding == (0, 0, 0, 0) or (allow_same and window.is_tflite_same()):
            return x, VALID if window.padding == (0, 0, 0, 0) else SAME, window
        top, bottom, left, right = window.padding
        paddings = self.graph.constant(f"{name}_paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]]))
        shape = (x.shape[0], x.shape[1], x.shape[2] + top + bottom, x.shape[3] + left + right)
        return self._op("PAD", f"{name}_padded", [x.tensor, paddings], shape), VALID, replace(window, padding=(0,) * 4)

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
