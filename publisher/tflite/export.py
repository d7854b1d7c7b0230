"""Export a PyTorch module to a float32 .tflite file whose weights rankcast updates patch in place.

The module is traced with torch.fx, so nn.Sequential and modules with residual adds both work. Each
node becomes TFLite operators through publisher.tflite.ops; the file carries the binding from PyTorch
parameter names to TFLite tensors. Supported: Linear, Conv2d (groups 1 or depthwise), ReLU, ReLU6,
MaxPool2d, AvgPool2d, Flatten, Softmax, Identity and Dropout (inference: identity), and the functions
``+``/torch.add, torch.relu/F.relu, torch.flatten. Anything else raises UnsupportedLayerError naming
every such layer. The .tflite takes its input in PyTorch's layout (N×F or NCHW).
"""

from __future__ import annotations

import operator
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from codec.tflite_binding import Binding
from publisher.errors import ExportError, UnsupportedLayerError
from publisher.tflite.ops import Lowering, Value, Window, same_padding

_Lower = Callable[[Lowering, str, nn.Module, Value], Value]


def export_tflite(model: nn.Module, input_shape: Sequence[int], path: Path) -> Binding:
    """Write ``model`` as a .tflite file at ``path`` (through a temporary file) and return its binding."""
    data, binding = export_tflite_bytes(model, input_shape)
    temporary = Path(f"{path}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return binding


def export_tflite_bytes(model: nn.Module, input_shape: Sequence[int]) -> tuple[bytes, Binding]:
    """The .tflite bytes of ``model`` for inputs of ``input_shape`` (N,F or N,C,H,W) and its binding."""
    traced = _trace(model)
    modules = dict(traced.named_modules())
    problems = [problem for node in traced.graph.nodes if (problem := _problem(node, modules))]
    problems += _shared_modules(traced, modules)
    if problems:
        raise UnsupportedLayerError(problems)
    lowering = Lowering()
    values: dict[fx.Node, Value] = {}
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            values[node] = lowering.input(node.name, tuple(int(d) for d in input_shape))
        elif node.op == "output":
            lowering.output(values[node.args[0]])
        elif node.op == "call_module":
            module = modules[node.target]
            values[node] = _MODULES[type(module)][1](lowering, node.target, module, values[node.args[0]])
        else:
            values[node] = _lower_function(lowering, node, values)
    return lowering.finish()


def _trace(model: nn.Module) -> fx.GraphModule:
    if not isinstance(model, nn.Module):
        raise ExportError(f"the exporter takes a torch.nn.Module, not {type(model).__name__}")
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx fails in many ways on data-dependent control flow
        raise ExportError(f"torch.fx cannot trace the model ({exc}); the exporter needs a static graph") from None


def _problem(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """Why ``node`` cannot be exported, or None."""
    if node.op == "call_module":
        module = modules[node.target]
        if type(module) not in _MODULES:
            return f"{node.target} ({type(module).__name__})"
        reason = _MODULES[type(module)][0](module)
        return f"{node.target} ({type(module).__name__}: {reason})" if reason else None
    if node.op == "call_function":
        if node.target not in _FUNCTIONS:
            return f"{node.name} (function {getattr(node.target, '__name__', node.target)})"
        return _function_problem(node)
    if node.op == "output" and not isinstance(node.args[0], fx.Node):
        return "output (only a single tensor output is exported)"
    if node.op == "placeholder" and node.prev.op == "placeholder":
        return f"{node.name} (only one input is exported)"
    return None if node.op in ("placeholder", "output") else f"{node.name} ({node.op} {node.target})"


def _shared_modules(traced: fx.GraphModule, modules: dict[str, nn.Module]) -> list[str]:
    calls = Counter(node.target for node in traced.graph.nodes if node.op == "call_module")
    return [f"{target} (called {count} times: shared weights cannot be bound)" for target, count in calls.items()
            if count > 1 and any(True for _ in modules[target].parameters())]


def _function_problem(node: fx.Node) -> str | None:
    kind = _FUNCTIONS[node.target]
    tensors = [arg for arg in node.args if isinstance(arg, fx.Node)]
    if kind == "add" and (len(node.args) != 2 or len(tensors) != 2 or node.kwargs):
        return f"{node.name} (add: only the sum of two tensors)"
    if kind == "flatten" and (tuple(node.args[1:]) + tuple(node.kwargs.values()) not in ((1,), (1, -1))):
        return f"{node.name} (flatten: only torch.flatten(x, 1))"
    if kind == "relu" and (len(node.args) != 1 or set(node.kwargs) - {"inplace"}):
        return f"{node.name} (relu: only relu(x))"
    return None


def _lower_function(lowering: Lowering, node: fx.Node, values: dict[fx.Node, Value]) -> Value:
    kind = _FUNCTIONS[node.target]
    first = values[node.args[0]]
    if kind == "add":
        return lowering.add(node.name, first, values[node.args[1]])
    return lowering.relu(node.name, first) if kind == "relu" else lowering.flatten(node.name, first)


def _array(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().cpu().to(torch.float32).numpy()


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _conv_window(conv: nn.Conv2d) -> Window:
    kernel, dilation = _pair(conv.kernel_size), _pair(conv.dilation)
    if conv.padding == "same":
        padding = same_padding(kernel, dilation)
    else:
        height, width = (0, 0) if conv.padding == "valid" else _pair(conv.padding)
        padding = (height, height, width, width)
    return Window(kernel, _pair(conv.stride), padding, dilation)


def _pool_window(pool: nn.MaxPool2d | nn.AvgPool2d) -> Window:
    kernel = _pair(pool.kernel_size)
    height, width = _pair(pool.padding)
    return Window(kernel, _pair(pool.stride or kernel), (height, height, width, width))


def _conv_problem(conv: nn.Conv2d) -> str | None:
    if conv.padding_mode != "zeros":
        return f"padding_mode {conv.padding_mode!r}"
    if conv.groups not in (1, conv.in_channels):
        return f"groups={conv.groups}; only 1 or in_channels (depthwise)"
    return None


def _max_pool_problem(pool: nn.MaxPool2d) -> str | None:
    if pool.ceil_mode or pool.return_indices or _pair(pool.dilation) != (1, 1) or _pair(pool.padding) != (0, 0):
        return "only without padding, dilation, ceil_mode and return_indices"
    return None


def _avg_pool_problem(pool: nn.AvgPool2d) -> str | None:
    padded = _pair(pool.padding) != (0, 0)
    if pool.ceil_mode or pool.divisor_override is not None or (padded and not pool.count_include_pad):
        return "only without ceil_mode and divisor_override, and padding only with count_include_pad"
    return None


def _no_problem(_: nn.Module) -> None:
    return None


def _lower_linear(lowering: Lowering, name: str, module: nn.Module, x: Value) -> Value:
    return lowering.linear(name, x, _array(module.weight), _array(module.bias))


def _lower_conv(lowering: Lowering, name: str, module: nn.Module, x: Value) -> Value:
    return lowering.conv2d(name, x, _array(module.weight), _array(module.bias), _conv_window(module), module.groups)


_MODULES: dict[type, tuple[Callable[[nn.Module], str | None], _Lower]] = {
    nn.Linear: (_no_problem, _lower_linear),
    nn.Conv2d: (_conv_problem, _lower_conv),
    nn.ReLU: (_no_problem, lambda lowering, name, module, x: lowering.relu(name, x)),
    nn.ReLU6: (_no_problem, lambda lowering, name, module, x: lowering.relu(name, x, six=True)),
    nn.MaxPool2d: (_max_pool_problem, lambda lowering, name, module, x: lowering.pool2d(
        name, x, _pool_window(module), average=False)),
    nn.AvgPool2d: (_avg_pool_problem, lambda lowering, name, module, x: lowering.pool2d(
        name, x, _pool_window(module), average=True)),
    nn.Flatten: (lambda module: None if (module.start_dim, module.end_dim) == (1, -1) else "only Flatten(1, -1)",
                 lambda lowering, name, module, x: lowering.flatten(name, x)),
    nn.Softmax: (lambda module: "dim must be given" if module.dim is None else None,
                 lambda lowering, name, module, x: lowering.softmax(name, x, module.dim)),
    nn.Identity: (_no_problem, lambda lowering, name, module, x: x),
    nn.Dropout: (_no_problem, lambda lowering, name, module, x: x),
}

_FUNCTIONS: dict[object, str] = {
    operator.add: "add", torch.add: "add", torch.relu: "relu", F.relu: "relu", torch.flatten: "flatten",
}
