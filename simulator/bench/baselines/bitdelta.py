"""(f) 1-bit sign deltas with one scale per tensor, after BitDelta (Liu et al., 2024).

The fine-tune's delta of each weight tensor becomes ``scale · sign(Δ)`` (a dense ``b1`` record), the
scale starting at mean |Δ|; as in BitDelta the scales are then calibrated by a short training run with
the signs fixed. Biases travel as dense i8 deltas. The swept knob is how many weight tensors are sent
(largest relative change first); the others stay as deployed.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from publisher.training.delta_set import DeltaSet
from publisher.training.deltas import Delta, DenseDelta, SignDelta


def ranked_tensors(base: nn.Module, deltas: Mapping[str, torch.Tensor]) -> list[str]:
    """Weight tensors (2+ dimensions) by relative change ‖Δ‖/‖W‖, largest first."""
    weights = {name: p for name, p in base.named_parameters() if p.dim() >= 2}
    def relative_change(name: str) -> float:
        return float(deltas[name].norm() / weights[name].detach().norm().clamp_min(1e-12))

    return sorted(weights, key=relative_change, reverse=True)


def sign_delta_set(base: nn.Module, deltas: Mapping[str, torch.Tensor], tensors: list[str]) -> DeltaSet:
    """Sign deltas on ``tensors`` (scales trainable) and dense i8 bias deltas set to the fine-tune's."""
    chosen: dict[str, Delta] = {}
    for name, parameter in base.named_parameters():
        if name in tensors:
            chosen[name] = SignDelta(deltas[name], float(deltas[name].abs().mean()))
        elif parameter.dim() <= 1:
            dense = DenseDelta(tuple(parameter.shape), "i8")
            with torch.no_grad():
                dense.values.copy_(deltas[name])
            chosen[name] = dense
    delta_set = DeltaSet(base, chosen)
    delta_set.set_quantised(True)
    return delta_set
