"""Batch norm folded away, so the model the publisher trains is the model a .tflite file runs.

In evaluation mode a BatchNorm is a per-channel affine map, y = x·s + t with s = γ/√(σ² + ε) and
t = β − μ·s. Directly after a Conv2d or Linear whose output nothing else reads, it is folded into that
layer: W·s per output channel, a bias (b − μ)·s + β (a bias is created when the layer had none), and
the BatchNorm becomes Identity. Anywhere else it becomes a ChannelAffine holding s and t as its
``weight`` and ``bias``. ``fold_batchnorm`` gives the same float32 weights every time, so the exporter
and ``rankcast update build`` both arrive at exactly the deployed weights.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
import torch.fx as fx
from torch import nn

from publisher.errors import ModelError

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_FOLDS_INTO = {nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm1d: nn.Linear}


class ChannelAffine(nn.Module):
    """x·weight + bias per channel (dimension 1): a batch norm that no layer before it absorbs."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


class ModuleTracer(fx.Tracer):
    """torch.fx's tracer with ChannelAffine kept whole (a leaf), so its parameters stay bindable."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, ChannelAffine) or super().is_leaf_module(module, qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """``model`` traced with ModuleTracer; a model torch.fx cannot trace is a ModelError."""
    try:
        return fx.GraphModule(model, ModuleTracer().trace(model))
    except Exception as exc:  # torch.fx fails in many ways on data-dependent control flow
        raise ModelError(f"torch.fx cannot trace the model ({exc}); rankcast needs a static graph") from None


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in evaluation mode with every BatchNorm folded (see the module docstring)."""
    folded = copy.deepcopy(model).eval()
    norms = {name for name, module in folded.named_modules() if isinstance(module, _NORMS)}
    if not norms:
        return folded
    for name in sorted(norms):
        _check_foldable(name, folded.get_submodule(name))
    into = _layers_before(trace(folded), norms)
    with torch.no_grad():
        for name in sorted(norms):
            norm = folded.get_submodule(name)
            scale, shift = _affine(norm)
            if name in into:
                _fold_into(folded.get_submodule(into[name]), scale, shift)
                _replace(folded, name, nn.Identity())
            else:
                _replace(folded, name, ChannelAffine(scale.float(), shift.float()))
    return folded


def _check_foldable(name: str, norm: nn.Module) -> None:
    if not norm.track_running_stats or norm.running_mean is None:
        raise ModelError(f"{name} ({type(norm).__name__}) keeps no running statistics, so it normalises each batch "
                         "by itself and cannot run as a fixed layer; build it with track_running_stats=True")


def _layers_before(traced: fx.GraphModule, norms: set[str]) -> dict[str, str]:
    """BatchNorm name -> the Conv2d or Linear it folds into, for those called once right after it."""
    modules = dict(traced.named_modules())
    calls = Counter(node.target for node in traced.graph.nodes if node.op == "call_module")
    into = {}
    for node in traced.graph.nodes:
        if node.op != "call_module" or node.target not in norms or calls[node.target] != 1:
            continue
        source = node.args[0]
        if not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        layer = modules[source.target]
        if type(layer) is _FOLDS_INTO[type(modules[node.target])] and calls[source.target] == 1:
            into[node.target] = source.target
    return into


def _affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, t) of the evaluation-mode batch norm, in float64."""
    mean, variance = norm.running_mean.double(), norm.running_var.double()
    scale = 1.0 / torch.sqrt(variance + norm.eps)
    if norm.affine:
        scale = scale * norm.weight.double()
    shift = -mean * scale + (norm.bias.double() if norm.affine else 0.0)
    return scale, shift


def _fold_into(layer: nn.Conv2d | nn.Linear, scale: torch.Tensor, shift: torch.Tensor) -> None:
    weight = layer.weight.double() * scale.view((-1,) + (1,) * (layer.weight.dim() - 1))
    bias = shift if layer.bias is None else layer.bias.double() * scale + shift
    layer.weight = nn.Parameter(weight.float())
    layer.bias = nn.Parameter(bias.float())


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent), attribute, module)
