"""(e) Structured low-rank updates of Konečný et al. 2016 ("Federated learning: strategies for
improving communication efficiency"): ΔW = A·B with A a fixed random matrix from a seed, only B trained.

Here the fixed factor is the larger side of each layer (so the trained, sent factor is the smaller
one), drawn as ±1/√k signs from a per-layer seed by the codec's seeded generator (codec.seeded). Each
layer's lowrank record carries A as its seed, which devices regenerate, and B as i8 codes: the bytes
counted are the real payload, and accuracy comes from applying those same records by codec.apply.
"""

from __future__ import annotations

from torch import nn

from publisher.delta_set import DeltaSet
from publisher.deltas import Delta, DenseDelta, LowRankDelta
from publisher.factorised import factor_shapes, sends_dense, view_2d


def structured_delta_set(
    base: nn.Module, rank: int, small: bool = True, seed: int = 0, dtype: str = "i8", levels: int | None = None
) -> DeltaSet:
    """The deployed model with fixed random A and trainable B of rank ``rank`` on every layer."""
    deltas: dict[str, Delta] = {}
    for index, (name, shape) in enumerate(factor_shapes(base).items()):
        if sends_dense(shape, rank):
            deltas[name] = DenseDelta(shape, "i8")
            continue
        out, rest = view_2d(shape)
        deltas[name] = LowRankDelta(shape, rank, dtype, seed + index, "u" if out >= rest else "v", levels)
    if small:
        deltas.update({n: DenseDelta(tuple(p.shape), "i8") for n, p in base.named_parameters() if p.dim() <= 1})
    return DeltaSet(base, {n: deltas[n] for n, _ in base.named_parameters() if n in deltas})


def sent_bytes(delta_set: DeltaSet) -> int:
    """Bytes of the compressed payload of the update's records (seeded factors travel as their seeds)."""
    return len(delta_set.encode()[0])
