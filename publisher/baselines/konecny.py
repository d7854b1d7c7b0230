"""(e) Structured low-rank updates of Konečný et al. 2016 ("Federated learning: strategies for
improving communication efficiency"): ΔW = A·B with A a fixed random matrix from a seed, only B trained.

Here the fixed factor is the larger side of each layer (so the trained, sent factor is the smaller
one), drawn as ±1/√k signs from a per-layer seed. The device would regenerate A from the seed, so the
bytes counted are a payload of B alone (dense i8 records, a scale per tensor) plus 8 bytes of seed;
accuracy comes from applying the equivalent lowrank records (A as exact codes) by codec.apply.
"""

from __future__ import annotations

from torch import nn

from codec.arrays import WireArray
from codec.payload import encode_payload
from codec.records import DenseRecord, LowRankRecord, Record
from publisher.delta_set import DeltaSet
from publisher.deltas import Delta, DenseDelta, LowRankDelta
from publisher.factorised import factor_shapes, sends_dense, view_2d

SEED_BYTES = 8


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
    """Payload bytes of everything but the seeded factors, plus the seed."""
    return len(encode_payload(_sent_records(delta_set.records()))[0]) + SEED_BYTES


def _sent_records(records: list[Record]) -> list[Record]:
    sent: list[Record] = []
    for record in records:
        if not isinstance(record, LowRankRecord):
            sent.append(record)
        elif record.u.shape[0] >= record.v.shape[1]:  # U fixed: send V (r × rest), one scale
            sent.append(DenseRecord(record.name, "add", record.v, _first(record.v_scale)))
        else:  # V fixed: send U (out × r), one scale
            sent.append(DenseRecord(record.name, "add", record.u, _first(record.u_scale)))
    return sent


def _first(scale: WireArray) -> WireArray:
    """A constant scale array as the one value it repeats."""
    return WireArray("f32", (1,), scale.data[:4])
