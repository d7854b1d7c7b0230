"""A prototype for the throughput benchmark, not used by rankcast's training: the low-rank path.

Each ungrouped Conv2d and Linear large enough to gain computes ``layer(x; W) + U·(V·x)`` (for a conv, a rank-r
conv then a 1×1 conv) on its activations instead of materialising ``W + U·V`` every step, so the frozen W needs no
weight gradient. The update it computes equals the materialised one up to float rounding, not bit for bit, which
is why training keeps materialising (the device applies exactly what QAT trained).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from publisher.training.delta_set import DeltaSet
from publisher.training.deltas import LowRankDelta
from publisher.training.quantiser import QuantisedValues
from publisher.training.update import DEFAULT_RANK, wrap

#: Smallest weight the low-rank path takes. Timed alone on this CPU (batch 64, rank 8), the path's extra convolutions
#: and quantisation cost about 1 ms a layer a step, more than the weight gradient they save on smaller layers (for
#: example 480×80 1×1 at 2×2: 3.5 against 2.1 ms); from 1280×160 (205k numbers, 3.8 against 5.9 ms) they gain.
PATH_MIN_WEIGHT = 2**17


class LowRankPath(nn.Module):
    """A Conv2d (ungrouped) or Linear computing ``layer(x; W) + U·(V·x)``, W frozen, U·V never materialised."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, delta: LowRankDelta) -> None:
        super().__init__()
        self.layer = layer
        self.delta = delta

    def factor(self, side: str) -> torch.Tensor:
        """U or V as the forward pass uses it: the seeded signs as stored, a trained factor as its codes × scale."""
        delta = self.delta
        values = delta.u if side == "u" else delta.v
        return values if side == delta.fixed else QuantisedValues.apply(values, delta.dtype, delta.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen layer plus the rank-r path on the activations."""
        u, v = self.factor("u"), self.factor("v")
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return layer(x) + F.linear(F.linear(x, v), u)
        inner = F.conv2d(x, v.reshape(v.shape[0], *layer.weight.shape[1:]), None, layer.stride, layer.padding,
                         layer.dilation)
        return layer(x) + F.conv2d(inner, u[:, :, None, None])


def path_is_cheaper(delta: LowRankDelta) -> bool:
    """A weight of ≥ PATH_MIN_WEIGHT whose gradient's out·rest outweighs the path's ~3·r·(out + rest) a position."""
    out, rest = delta.shape[0], math.prod(delta.shape[1:])
    return out * rest >= PATH_MIN_WEIGHT and out * rest > 3 * delta.u.shape[1] * (out + rest)


def low_rank_path(delta_set: DeltaSet) -> int:
    """Move, in place, each LowRankDelta layer that path_is_cheaper allows onto the low-rank path; how many moved."""
    moved = 0
    for name, module in list(delta_set.model.named_modules()):
        if not isinstance(module, nn.Conv2d | nn.Linear) or not parametrize.is_parametrized(module, "weight"):
            continue
        delta = module.parametrizations.weight[0]
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"):
            continue
        if not isinstance(delta, LowRankDelta) or not path_is_cheaper(delta):
            continue
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        parent, _, child = name.rpartition(".")
        setattr(delta_set.model.get_submodule(parent), child, LowRankPath(module, delta))
        moved += 1
    return moved


def low_rank_mismatch(model: nn.Module) -> float:
    """Worst relative error of a moved layer's update against materialised ``W + U·V`` (random factors and inputs)."""
    delta_set = wrap(model, DEFAULT_RANK)
    delta_set.set_quantised(True)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in delta_set.trainable_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    inputs, expected = {}, {}
    for name, layer in delta_set.model.named_modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            shape = (4, layer.in_features) if isinstance(layer, nn.Linear) else (4, layer.in_channels, 8, 8)
            inputs[name] = torch.randn(shape, generator=generator)
            with torch.no_grad():
                expected[name] = layer(inputs[name])
    low_rank_path(delta_set)
    worst = 0.0
    with torch.no_grad():
        for name, path in delta_set.model.named_modules():
            if isinstance(path, LowRankPath):
                update = expected[name] - path.layer(inputs[name])
                worst = max(worst, float((path(inputs[name]) - expected[name]).abs().max() / update.abs().max()))
    return worst
