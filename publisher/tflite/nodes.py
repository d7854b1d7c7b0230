"""Traced PyTorch calls lowered to TFLite operators: which modules, functions and methods export, and how.

A handler gets the call's arguments with tensors replaced by graph Values (sizes and shapes the forward
computed are plain numbers) and the shape PyTorch computed for the result; it raises Unsupported with a
reason for a use it cannot lower exactly. Shape-only calls (view, reshape, flatten, squeeze, unsqueeze,
nn.Flatten) become one reshape to the computed shape; Dropout and Identity are the identity in evaluation.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from publisher.models.folding import ChannelAffine
from publisher.tflite.ops import Lowering, Value, Window, same_padding


class Unsupported(Exception):
    """This call cannot be exported; ``reason`` says why (or is empty: the call itself is unknown)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Call:
    """One traced call: its node name, module (for call_module), arguments and PyTorch's result shape."""

    name: str
    module: nn.Module | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    shape: tuple[int, ...]

    def tensor(self, index: int = 0) -> Value:
        value = self.args[index] if index < len(self.args) else None
        if not isinstance(value, Value):
            raise Unsupported(f"argument {index} is not a tensor the graph computes")
        return value

    def option(self, index: int, name: str, default: Any = None) -> Any:
        return self.args[index] if index < len(self.args) else self.kwargs.get(name, default)


_Handler = Callable[[Lowering, Call], Value]


def lower_node(lowering: Lowering, node: fx.Node, modules: dict[str, nn.Module], values: dict[fx.Node, Any],
               shape: tuple[int, ...]) -> Value:
    """The TFLite value of a traced call whose result is a tensor of ``shape``."""
    handler = _handler(node, modules)
    args = fx.node.map_arg(node.args, lambda arg: values[arg])
    kwargs = fx.node.map_arg(node.kwargs, lambda arg: values[arg])
    module = modules[node.target] if node.op == "call_module" else None
    return handler(lowering, Call(str(node.target) if module else node.name, module, tuple(args), dict(kwargs), shape))


def describe(node: fx.Node, modules: dict[str, nn.Module], reason: str | None) -> str:
    """How an error names the call: its module path and type, or its node and function or method."""
    if node.op == "call_module":
        what = f"{node.target} ({type(modules[node.target]).__name__}"
    elif node.op == "call_function":
        what = f"{node.name} (function {getattr(node.target, '__name__', node.target)}"
    elif node.op == "call_method":
        what = f"{node.name} (method .{node.target}()"
    else:
        what = f"{node.name} ({node.op} {node.target}: a tensor attribute used outside a layer"
    return f"{what}: {reason})" if reason else f"{what})"


def _handler(node: fx.Node, modules: dict[str, nn.Module]) -> _Handler:
    table: dict[Any, _Handler] = {}
    key: Any = node.target
    if node.op == "call_module":
        table, key = _MODULES, type(modules[node.target])
    elif node.op == "call_function":
        table = _FUNCTIONS
    elif node.op == "call_method":
        table = _METHODS
    if key not in table:
        raise Unsupported()
    return table[key]


def _array(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().cpu().to(torch.float32).numpy()


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _linear(lowering: Lowering, call: Call) -> Value:
    return lowering.linear(call.name, call.tensor(), _array(call.module.weight), _array(call.module.bias))


def _conv(lowering: Lowering, call: Call) -> Value:
    conv = call.module
    if conv.padding_mode != "zeros":
        raise Unsupported(f"padding_mode {conv.padding_mode!r}")
    if conv.groups not in (1, conv.in_channels):
        raise Unsupported(f"groups={conv.groups}; only 1 or in_channels (depthwise)")
    kernel, dilation = _pair(conv.kernel_size), _pair(conv.dilation)
    if conv.padding == "same":
        padding = same_padding(kernel, dilation)
    else:
        height, width = (0, 0) if conv.padding == "valid" else _pair(conv.padding)
        padding = (height, height, width, width)
    window = Window(kernel, _pair(conv.stride), padding, dilation)
    return lowering.conv2d(call.name, call.tensor(), _array(conv.weight), _array(conv.bias), window, conv.groups)


def _pool(lowering: Lowering, call: Call, average: bool) -> Value:
    pool = call.module
    if pool.ceil_mode:
        raise Unsupported("ceil_mode")
    if average and pool.divisor_override is not None:
        raise Unsupported("divisor_override")
    if average and _pair(pool.padding) != (0, 0) and not pool.count_include_pad:
        raise Unsupported("padding only with count_include_pad")
    if not average and (pool.return_indices or _pair(pool.dilation) != (1, 1)):
        raise Unsupported("dilation and return_indices")
    kernel = _pair(pool.kernel_size)
    height, width = _pair(pool.padding)
    window = Window(kernel, _pair(pool.stride or kernel), (height, height, width, width))
    return lowering.pool2d(call.name, call.tensor(), window, average)


def _adaptive_average(lowering: Lowering, call: Call) -> Value:
    x = call.tensor()
    out_h, out_w = call.shape[2:]
    if (out_h, out_w) == (1, 1):
        return lowering.mean(call.name, x, (2, 3), keepdim=True)
    if x.shape[2] % out_h or x.shape[3] % out_w:
        raise Unsupported(f"output {out_h}×{out_w} does not divide the input {x.shape[2]}×{x.shape[3]}")
    kernel = (x.shape[2] // out_h, x.shape[3] // out_w)
    return lowering.pool2d(call.name, x, Window(kernel, kernel), average=True)


def _mean(lowering: Lowering, call: Call) -> Value:
    dims = call.option(1, "dim")
    if dims is None or call.kwargs.get("dtype") is not None:
        raise Unsupported("only a mean over given dimensions, for example x.mean((2, 3))")
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if 0 in {d % len(call.tensor().shape) for d in dims}:
        raise Unsupported("a mean over the batch dimension")
    return lowering.mean(call.name, call.tensor(), dims, bool(call.option(2, "keepdim", False)))


def _cat(lowering: Lowering, call: Call) -> Value:
    tensors = call.option(0, "tensors")
    if not isinstance(tensors, list | tuple) or not all(isinstance(t, Value) for t in tensors):
        raise Unsupported("only a list of tensors the graph computes")
    dim = call.option(1, "dim", 0)
    if dim % len(call.shape) == 0:
        raise Unsupported("concatenation along the batch dimension")
    return lowering.concat(call.name, list(tensors), dim)


def _pad(lowering: Lowering, call: Call) -> Value:
    x, pads = call.tensor(), call.option(1, "pad")
    if call.option(2, "mode", "constant") != "constant" or call.option(3, "value", None) not in (None, 0, 0.0):
        raise Unsupported("only constant zero padding")
    per_dim = [(0, 0)] * len(x.shape)
    for index in range(len(pads) // 2):  # PyTorch lists the last dimension first
        per_dim[len(x.shape) - 1 - index] = (int(pads[2 * index]), int(pads[2 * index + 1]))
    if per_dim[0] != (0, 0):
        raise Unsupported("padding of the batch dimension")
    return lowering.pad(call.name, x, per_dim)


def _softmax(lowering: Lowering, call: Call) -> Value:
    dim = call.module.dim if call.module is not None else call.option(1, "dim")
    if dim is None:
        raise Unsupported("dim must be given")
    return lowering.softmax(call.name, call.tensor(), dim)


def _hardtanh(lowering: Lowering, call: Call) -> Value:
    if (call.option(1, "min_val", -1.0), call.option(2, "max_val", 1.0)) != (0.0, 6.0):
        raise Unsupported("only hardtanh(x, 0, 6), which is relu6")
    return lowering.unary("RELU6", call.name, call.tensor())


def _binary(kind: str) -> _Handler:
    def lower(lowering: Lowering, call: Call) -> Value:
        if len(call.args) != 2 or set(call.kwargs) - {"out"} or call.kwargs.get("out") is not None:
            raise Unsupported("only two operands (no alpha, rounding_mode or out)")
        for operand in call.args:
            if not isinstance(operand, Value | int | float) or isinstance(operand, bool):
                raise Unsupported("operands must be tensors the graph computes or numbers")
        return lowering.binary(kind, call.name, *(float(a) if not isinstance(a, Value) else a for a in call.args))
    return lower


def _unary(kind: str) -> _Handler:
    return lambda lowering, call: lowering.unary(kind, call.name, call.tensor())


def _reshape(lowering: Lowering, call: Call) -> Value:
    return lowering.reshape(call.name, call.tensor(), call.shape)


def _identity(lowering: Lowering, call: Call) -> Value:
    return call.tensor()


def _dropout(lowering: Lowering, call: Call) -> Value:
    if call.option(2, "training", True):
        raise Unsupported("F.dropout drops in evaluation too unless given training=self.training")
    return call.tensor()


_ACTIVATIONS: dict[Any, _Handler] = {
    "relu": _unary("RELU"), "relu6": _unary("RELU6"), "hardswish": _unary("HARD_SWISH"),
    "sigmoid": _unary("LOGISTIC"), "tanh": _unary("TANH"),
    "hardsigmoid": lambda lowering, call: lowering.hardsigmoid(call.name, call.tensor()),
    "silu": lambda lowering, call: lowering.silu(call.name, call.tensor()),
}
_ARITHMETIC = {"add": _binary("ADD"), "sub": _binary("SUB"), "mul": _binary("MUL"), "div": _binary("DIV")}

_MODULES: dict[type, _Handler] = {
    nn.Linear: _linear, nn.Conv2d: _conv, ChannelAffine: lambda lowering, call: lowering.affine(
        call.name, call.tensor(), _array(call.module.weight), _array(call.module.bias)),
    nn.ReLU: _ACTIVATIONS["relu"], nn.ReLU6: _ACTIVATIONS["relu6"], nn.Hardswish: _ACTIVATIONS["hardswish"],
    nn.Sigmoid: _ACTIVATIONS["sigmoid"], nn.Tanh: _ACTIVATIONS["tanh"], nn.Hardsigmoid: _ACTIVATIONS["hardsigmoid"],
    nn.SiLU: _ACTIVATIONS["silu"],
    nn.MaxPool2d: lambda lowering, call: _pool(lowering, call, average=False),
    nn.AvgPool2d: lambda lowering, call: _pool(lowering, call, average=True),
    nn.AdaptiveAvgPool2d: _adaptive_average, nn.Flatten: _reshape, nn.Unflatten: _reshape, nn.Softmax: _softmax,
    nn.Identity: _identity, nn.Dropout: _identity, nn.Dropout1d: _identity, nn.Dropout2d: _identity,
}

_FUNCTIONS: dict[Any, _Handler] = {
    operator.add: _ARITHMETIC["add"], operator.iadd: _ARITHMETIC["add"], torch.add: _ARITHMETIC["add"],
    operator.sub: _ARITHMETIC["sub"], operator.isub: _ARITHMETIC["sub"], torch.sub: _ARITHMETIC["sub"],
    operator.mul: _ARITHMETIC["mul"], operator.imul: _ARITHMETIC["mul"], torch.mul: _ARITHMETIC["mul"],
    operator.truediv: _ARITHMETIC["div"], operator.itruediv: _ARITHMETIC["div"], torch.div: _ARITHMETIC["div"],
    torch.relu: _ACTIVATIONS["relu"], F.relu: _ACTIVATIONS["relu"], F.relu6: _ACTIVATIONS["relu6"],
    F.hardswish: _ACTIVATIONS["hardswish"], F.hardsigmoid: _ACTIVATIONS["hardsigmoid"], F.silu: _ACTIVATIONS["silu"],
    torch.sigmoid: _ACTIVATIONS["sigmoid"], F.sigmoid: _ACTIVATIONS["sigmoid"], torch.tanh: _ACTIVATIONS["tanh"],
    F.tanh: _ACTIVATIONS["tanh"], F.hardtanh: _hardtanh,
    torch.flatten: _reshape, torch.reshape: _reshape, torch.squeeze: _reshape, torch.unsqueeze: _reshape,
    torch.cat: _cat, torch.concat: _cat, torch.mean: _mean, F.adaptive_avg_pool2d: _adaptive_average,
    F.pad: _pad, F.dropout: _dropout, F.softmax: _softmax,
}

_METHODS: dict[str, _Handler] = {
    **{name: _ACTIVATIONS[name] for name in ("relu", "sigmoid", "tanh")}, **_ARITHMETIC, "mean": _mean,
    "view": _reshape, "reshape": _reshape, "flatten": _reshape, "squeeze": _reshape, "unsqueeze": _reshape,
    "contiguous": _identity, "softmax": _softmax,
}
