"""Binding by content: find each PyTorch weight in a .tflite file made by any converter.

A parameter is bound to a float32 constant tensor whose buffer holds exactly its values (bit for bit)
in one of the candidate layouts: as is, transposed (2-D), OHWI or [1, H, W, C·M] (4-D kernels). A
parameter that no buffer holds is unmatched (the converter changed it: folded, fused or quantised); one
that several buffers or layouts hold, and whose TFLite tensor name does not settle it, is ambiguous.
Neither can be updated in place; the report says which. Torch-free: give numpy arrays.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from codec.tflite_binding import CONV_LAYOUT, DEPTHWISE_LAYOUT, Binding, BoundTensor
from codec.tflite_model import FLOAT32, TFLiteModel, parse_tflite

_LAYOUTS = {1: [(0,)], 2: [(0, 1), (1, 0)], 4: [CONV_LAYOUT, DEPTHWISE_LAYOUT, (0, 1, 2, 3)]}


@dataclass(frozen=True)
class BindReport:
    """What binding by content found for each parameter of the state dict."""

    matched: tuple[str, ...]
    unmatched: tuple[str, ...]
    ambiguous: tuple[str, ...]
    skipped: tuple[str, ...]  # not floating point (for example BatchNorm's num_batches_tracked)
    unused_buffers: tuple[int, ...]  # float32 constant buffers that no parameter matched

    @property
    def ok(self) -> bool:
        return not self.unmatched and not self.ambiguous

    def summary(self) -> str:
        lines = [f"bound {len(self.matched)} of {len(self.matched) + len(self.unmatched) + len(self.ambiguous)} "
                 "floating-point parameters by content"]
        for label, names in (("unmatched (no buffer holds these values)", self.unmatched),
                             ("ambiguous (several buffers hold these values)", self.ambiguous),
                             ("skipped (not floating point)", self.skipped)):
            if names:
                lines.append(f"{label}: {', '.join(names)}")
        if self.unused_buffers:
            lines.append(f"float32 buffers no parameter matched: {', '.join(map(str, self.unused_buffers))}")
        return "\n".join(lines)


def bind_by_content(tflite_bytes: bytes, state_dict: Mapping[str, np.ndarray]) -> tuple[Binding, BindReport]:
    """Bind every floating-point parameter of ``state_dict`` to the .tflite buffer holding its values."""
    data = memoryview(tflite_bytes)
    model = parse_tflite(data)
    index = _constant_index(model, data)
    chosen: dict[str, BoundTensor] = {}
    unmatched, ambiguous, skipped = [], [], []
    for name, value in state_dict.items():
        array = np.asarray(value)
        if array.dtype.kind != "f" or array.ndim == 0:
            skipped.append(name)
            continue
        candidates = _candidates(name, array.astype(np.float32), model, index)
        if len(candidates) == 1:
            chosen[name] = candidates[0]
        else:
            (ambiguous if candidates else unmatched).append(name)
    shared = _shared_buffers(chosen)
    ambiguous += [name for name in chosen if name in shared]
    bound = sorted((entry for name, entry in chosen.items() if name not in shared), key=lambda e: e.tensor)
    used = {entry.buffer for entry in bound}
    unused = sorted({model.tensors[t].buffer for tensors in index.values() for t in tensors} - used)
    report = BindReport(tuple(e.name for e in bound), tuple(unmatched), tuple(ambiguous), tuple(skipped),
                        tuple(unused))
    return Binding(tuple(bound)), report


def _constant_index(model: TFLiteModel, data: memoryview) -> dict[tuple, list[int]]:
    """Float32 constant tensors by (shape, sha256 of their bytes)."""
    index: dict[tuple, list[int]] = defaultdict(list)
    for number, tensor in enumerate(model.tensors):
        if tensor.type != FLOAT32 or tensor.buffer >= len(model.buffers) or not all(d >= 1 for d in tensor.shape):
            continue
        span = model.buffers[tensor.buffer]
        if span.length and span.length == 4 * math.prod(tensor.shape):
            digest = hashlib.sha256(data[span.offset : span.end]).digest()
            index[(tensor.shape, digest)].append(number)
    return index


def _candidates(name: str, array: np.ndarray, model: TFLiteModel, index: dict[tuple, list[int]]) -> list[BoundTensor]:
    """Distinct (buffer, layout) places that hold ``array``; a tensor named like the parameter wins a tie."""
    found: dict[tuple[int, tuple[int, ...]], BoundTensor] = {}
    for permutation in _LAYOUTS.get(array.ndim, [tuple(range(array.ndim))]):
        stored = np.ascontiguousarray(np.transpose(array, permutation), "<f4")
        for tensor in index.get((stored.shape, hashlib.sha256(stored.tobytes()).digest()), []):
            buffer = model.tensors[tensor].buffer
            found.setdefault((buffer, permutation), BoundTensor(name, tensor, buffer, array.shape, permutation))
    candidates = list(found.values())
    if len(candidates) > 1:
        named = [entry for entry in candidates if model.tensors[entry.tensor].name == name]
        return named if len(named) == 1 else candidates
    return candidates


def _shared_buffers(chosen: dict[str, BoundTensor]) -> set[str]:
    """Parameters that picked a buffer another parameter also picked (identical values, e.g. zeros)."""
    owners: dict[int, list[str]] = defaultdict(list)
    for name, entry in chosen.items():
        owners[entry.buffer].append(name)
    return {name for names in owners.values() if len(names) > 1 for name in names}
