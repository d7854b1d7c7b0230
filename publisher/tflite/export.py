"""Export a PyTorch module to a float32 .tflite file whose weights rankcast updates patch in place.

Batch norm is folded first (publisher.models.folding), so the file holds the weights the publisher
trains against. The folded module is traced with torch.fx and run once on an input of the given shape,
which gives every intermediate's shape and every size the forward computes (``x.view(x.size(0), -1)``);
each traced call then becomes TFLite operators through publisher.tflite.nodes. The file carries the
binding from PyTorch parameter names to TFLite tensors and takes its input in PyTorch's layout (N×F or
NCHW). What cannot be exported raises UnsupportedLayerError naming every such call.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from codec.tflite_binding import Binding
from publisher.errors import ExportError, ModelError, UnsupportedLayerError
from publisher.models.folding import fold_batchnorm, trace
from publisher.tflite.nodes import Unsupported, describe, lower_node
from publisher.tflite.ops import Lowering, Value


def export_tflite(model: nn.Module, input_shape: Sequence[int], path: Path) -> Binding:
    """Write ``model`` as a .tflite file at ``path`` (through a temporary file) and return its binding."""
    data, binding = export_tflite_bytes(model, input_shape)
    temporary = Path(f"{path}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return binding


def export_tflite_bytes(model: nn.Module, input_shape: Sequence[int]) -> tuple[bytes, Binding]:
    """The .tflite bytes of ``model`` for inputs of ``input_shape`` (N,F or N,C,H,W) and its binding."""
    if not isinstance(model, nn.Module):
        raise ExportError(f"the exporter takes a torch.nn.Module, not {type(model).__name__}")
    try:
        traced = trace(fold_batchnorm(model))
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    shape = tuple(int(d) for d in input_shape)
    lowering = Lowering()
    placeholders = [node for node in traced.graph.nodes if node.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedLayerError([f"{node.name} (only one input is exported)" for node in placeholders[1:]])
    values: dict[fx.Node, Any] = {placeholders[0]: lowering.input(placeholders[0].name, shape)}
    concrete = _run(traced, shape)
    modules = dict(traced.named_modules())
    problems = _shared_modules(traced, modules)
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            problems += _output(lowering, node, values)
        elif not isinstance(concrete[node], torch.Tensor):
            values[node] = concrete[node]  # a size, a shape or a number the forward computed
        else:
            values[node] = _lower(lowering, node, modules, values, concrete[node], problems)
    if problems:
        raise UnsupportedLayerError(problems)
    return lowering.finish()


def _lower(lowering: Lowering, node: fx.Node, modules: dict[str, nn.Module], values: dict[fx.Node, Any],
           result: torch.Tensor, problems: list[str]) -> Value:
    """The node's value in the TFLite graph; an unsupported node is added to ``problems`` and stood in for."""
    shape = tuple(result.shape)
    try:
        value = lower_node(lowering, node, modules, values, shape)
    except Unsupported as exc:
        problems.append(describe(node, modules, exc.reason))
        return lowering.stand_in(node.name, shape)
    except UnsupportedLayerError as exc:
        problems.extend(exc.layers)
        return lowering.stand_in(node.name, shape)
    if value.shape != shape:
        raise ExportError(f"{describe(node, modules, None)}: lowered to shape {value.shape}, but PyTorch computes "
                          f"{shape}; please report this model")
    return value


def _run(traced: fx.GraphModule, shape: tuple[int, ...]) -> dict[fx.Node, Any]:
    """Every node's result for one input of ``shape``: the shapes and sizes the lowering needs."""
    if len(shape) not in (2, 4) or any(d < 1 for d in shape):
        raise ExportError(f"input shape {shape}: give N,F or N,C,H,W with positive sizes")
    results: dict[fx.Node, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node: fx.Node) -> Any:
            results[node] = super().run_node(node)
            return results[node]

    try:
        with torch.no_grad():
            Recorder(traced).run(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    except Exception as exc:  # the user's forward can fail in any way on a wrong shape
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(f"the model cannot run on an input of shape {shape}: {reason}") from None
    return results


def _output(lowering: Lowering, node: fx.Node, values: dict[fx.Node, Any]) -> list[str]:
    result = node.args[0]
    if not isinstance(result, fx.Node) or not isinstance(values.get(result), Value):
        return ["output (only a single tensor output is exported)"]
    lowering.output(values[result])
    return []


def _shared_modules(traced: fx.GraphModule, modules: dict[str, nn.Module]) -> list[str]:
    calls = Counter(node.target for node in traced.graph.nodes if node.op == "call_module")
    return [f"{target} (called {count} times: shared weights cannot be bound)" for target, count in calls.items()
            if count > 1 and any(True for _ in modules[target].parameters())]
