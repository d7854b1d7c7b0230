"""Ranks for an update with both factors trained, under a byte budget, from a warm-up's spectrum.

A short full fine-tune shows where the model wants to move: the squared singular values of each
layer's delta ΔW are the energy that a rank-k factor of that layer can capture (Eckart-Young). Every
extra rank costs (out + rest) codes, so ranks are handed out greedily by captured energy per byte;
within a layer the spectrum decreases, so the greedy choice is always a prefix and the allocation is
the exact optimum of this knapsack relaxation. A share of the budget first buys a uniform rank
(RankPolicy.uniform_share: a hedge against a noisy spectrum). The plan is then sized with worst-case
codes (publisher.training.plan_bytes); units are dropped, last first, until it fits.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping

import torch
from torch import nn

from publisher.errors import BudgetError
from publisher.training.factorised import (
    BOTH_FACTORS,
    FactorConfig,
    factor_shapes,
    largest_factor_rank,
    unit_codes,
    view_2d,
)
from publisher.training.plan_bytes import planned_bytes
from publisher.training.rank_policy import DEFAULT_POLICY, RankPolicy

#: Bytes a code costs before compression, by code dtype.
CODE_BYTES = {"i8": 1.0, "i4": 0.5, "trit": 0.2, "b1": 0.125}


def spectra(model: nn.Module, deltas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Squared singular values of every factorisable layer's delta on its out × rest view."""
    return {
        name: torch.linalg.svdvals(deltas[name].reshape(view_2d(shape)).double()) ** 2
        for name, shape in factor_shapes(model).items()
    }


def allocate_ranks(
    model: nn.Module,
    deltas: Mapping[str, torch.Tensor],
    budget: int,
    config: FactorConfig = BOTH_FACTORS,
    policy: RankPolicy = DEFAULT_POLICY,
) -> dict[str, int]:
    """Ranks per layer whose payload fits in ``budget`` bytes, chosen by delta energy per byte."""
    floor = planned_bytes(model, {}, config, policy)
    if floor >= budget:
        raise BudgetError(
            f"a budget of {budget} bytes leaves nothing for factors: biases/norms alone take {floor} bytes; "
            "raise the budget or train without small tensors"
        )
    chosen = _greedy(model, spectra(model, deltas), budget - floor, config, policy)
    while chosen and planned_bytes(model, Counter(chosen), config, policy) > budget:
        chosen.pop()
    if not chosen:
        raise BudgetError(f"no layer fits a rank-1 factor in {budget} bytes; raise the budget")
    return dict(Counter(chosen))


def _greedy(
    model: nn.Module, energy: Mapping[str, torch.Tensor], allowance: float, config: FactorConfig, policy: RankPolicy
) -> list[str]:
    """Layer names in order of acceptance, one entry per rank unit.

    The policy's uniform share of the allowance first buys the largest uniform rank (a short
    fine-tune's spectrum is a noisy guess of where the final update lives), the rest goes by energy
    per byte.
    """
    shapes = factor_shapes(model)
    unit = {name: unit_codes(shape, config.seeded) * CODE_BYTES[config.dtype] for name, shape in shapes.items()}
    limit = {name: largest_factor_rank(shape, config.seeded, len(energy[name])) for name, shape in shapes.items()}
    overhead = policy.record_overhead
    chosen: list[str] = []
    spent = 0.0
    for rank in range(1, max(limit.values(), default=0) + 1):
        layers = [name for name in shapes if rank <= limit[name]]
        cost = sum(unit[name] + (overhead if rank == 1 else 0) for name in layers)
        if spent + cost > allowance * policy.uniform_share:
            break
        chosen.extend(layers)
        spent += cost
    heap = [(-float(energy[n][chosen.count(n)]) / unit[n], n) for n in shapes if chosen.count(n) < limit[n]]
    heapq.heapify(heap)
    while heap:
        _, name = heapq.heappop(heap)
        index = chosen.count(name)
        cost = unit[name] + (overhead if index == 0 else 0)
        if spent + cost > allowance:
            continue
        chosen.append(name)
        spent += cost
        if index + 1 < limit[name]:
            heapq.heappush(heap, (-float(energy[name][index + 1]) / unit[name], name))
    return chosen
