"""(e) Structured low-rank updates of Konečný et al. 2016 ("Federated learning: strategies for
improving communication efficiency"): ΔW = A·B with A a fixed random matrix from a seed, only B trained.

This is the factorised method with a seeded side (publisher.training.factorised, ``seeded=True``), one
rank for every layer and i8 codes (or trit codes, as rankcast's factors; the paper sends floats),
trained like every method, on its codes from the first step (publisher.training.fit). The fixed factor
is the larger side of each layer, drawn as ±1/√k signs from a per-layer seed by the codec's seeded generator
(codec.seeded): each record carries A as its seed and B as codes, so the bytes counted are the
real payload, and accuracy comes from applying those same records by codec.apply.
"""

from __future__ import annotations

from torch import nn

from publisher.training.delta_set import DeltaSet
from publisher.training.factorised import FactorConfig, factorise, uniform_ranks


def structured_delta_set(base: nn.Module, rank: int, small: bool = True, seed: int = 0, dtype: str = "i8") -> DeltaSet:
    """The deployed model with fixed random A and trainable B (``dtype`` codes) of rank ``rank`` on every layer."""
    return factorise(base, uniform_ranks(base, rank), FactorConfig(dtype, train_small=small, seeded=True, seed=seed))

