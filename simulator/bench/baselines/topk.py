"""(d) Top-k sparse fine-tuning in the style of Deep Gradient Compression (Lin et al., ICLR 2018).

DGC sends only the largest accumulated gradient entries. As an update method: a short full fine-tune
(the warm-up) accumulates each weight's change, the ``density`` largest changes of each weight tensor
(by magnitude, per layer as DGC selects) become the mask, and training restarts from the deployed
model with only those entries (and the biases) free. Values travel as a sparse record of i8 codes (or trit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from publisher.training.delta_set import DeltaSet
from publisher.training.deltas import Delta, DenseDelta, SparseDelta


def topk_positions(deltas: Mapping[str, torch.Tensor], density: float) -> dict[str, np.ndarray]:
    """Sorted flat positions of the ``density`` fraction largest |Δ| of each tensor of 2+ dimensions."""
    positions = {}
    for name, delta in deltas.items():
        if delta.dim() < 2:
            continue
        count = max(1, math.ceil(density * delta.numel()))
        flat = delta.abs().reshape(-1)
        positions[name] = np.sort(torch.topk(flat, count).indices.numpy())
    return positions


def sparse_delta_set(base: nn.Module, positions: Mapping[str, np.ndarray], small: bool = True,
                     dtype: str = "i8") -> DeltaSet:
    """The deployed model with trainable ``dtype`` values at ``positions`` (and dense i8 biases when ``small``)."""
    deltas: dict[str, Delta] = {}
    for name, parameter in base.named_parameters():
        shape = tuple(parameter.shape)
        if name in positions:
            deltas[name] = SparseDelta(shape, positions[name], dtype)
        elif small and parameter.dim() <= 1:
            deltas[name] = DenseDelta(shape, "i8")
    return DeltaSet(base, deltas)
