"""Ranks for a seeded update under a byte budget: the largest *balanced* ranks that fit.

With a seeded side the spectrum of a warm-up delta says nothing: a random k-dimensional column space
captures about k/out of a delta's energy whatever its singular values. So every layer gets rank in
proportion to how cheap its rank unit is (few outputs or few inputs: more rank), the widest layers
wait until the budget gives them several ranks, and no warm-up fine-tune is needed. The rules and
their evidence are publisher.training.rank_policy's.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from torch import nn

from publisher.errors import BudgetError
from publisher.training.factorised import (
    DEFAULT_FACTORS,
    FactorConfig,
    factor_shapes,
    largest_factor_rank,
    unit_codes,
)
from publisher.training.plan_bytes import planned_bytes
from publisher.training.rank_policy import DEFAULT_POLICY, RankPolicy


def balanced_ranks(
    model: nn.Module,
    scale: float,
    config: FactorConfig = DEFAULT_FACTORS,
    layers: Collection[str] | None = None,
    policy: RankPolicy = DEFAULT_POLICY,
) -> dict[str, int]:
    """Ranks at ``scale`` (the widest layer's rank, fractional): a layer whose rank unit costs ``u`` codes
    gets ``scale · (u_max / u) ** policy.balance`` (at least 1, at most its largest factorised rank).
    ``layers`` limits the plan to those layers (default: every factorisable one)."""
    balance = _balance(model, config, policy, layers)
    return {name: min(cap, max(1, math.floor(scale * weight))) for name, (weight, cap) in balance.items()}


def balanced_ranks_under_budget(
    model: nn.Module, budget: int, config: FactorConfig = DEFAULT_FACTORS, policy: RankPolicy = DEFAULT_POLICY
) -> dict[str, int]:
    """The largest balanced ranks (scale on a 1/policy.scale_steps grid) whose payload, with worst-case
    codes, fits ``budget``.

    The layers with the widest rank unit are left out (rank 0) while the budget would give them fewer
    than policy.widest_min_rank ranks and at least policy.min_layers_left other layers remain; their
    bytes go to the other layers, and the smallest plan is rank 1 on each of those.
    """
    units = {name: unit_codes(shape, config.seeded) for name, shape in factor_shapes(model).items()}
    if not units:
        raise BudgetError("the model has no Linear or Conv2d layer to factorise")
    narrower = [name for name, unit in units.items() if unit < max(units.values())]
    may_wait = len(narrower) >= policy.min_layers_left
    # the widest layers' rank is the balanced scale: they get widest_min_rank when that scale fits
    at_minimum = balanced_ranks(model, policy.widest_min_rank, config, policy=policy)
    if may_wait and planned_bytes(model, at_minimum, config, policy) > budget:
        layers = narrower
    else:
        layers = list(units)
    plan = _largest_fitting(model, layers, budget, config, policy)
    if plan is None:
        what = "its narrower layers" if layers is narrower else "every layer"
        raise BudgetError(f"no rank-1 update of {what} fits in {budget} bytes; raise the budget")
    return plan


def _largest_fitting(
    model: nn.Module, layers: list[str], budget: int, config: FactorConfig, policy: RankPolicy
) -> dict[str, int] | None:
    """The largest balanced ranks of ``layers`` that fit ``budget`` (binary search on the scale grid, whose
    step 0 is rank 1 on each layer), or None when that does not fit."""

    def plan(step: int) -> dict[str, int]:
        return balanced_ranks(model, step / policy.scale_steps, config, layers, policy)

    if planned_bytes(model, plan(0), config, policy) > budget:
        return None
    # from this step on every layer is at its largest factorised rank
    last = max(math.ceil(cap * policy.scale_steps / weight)
               for weight, cap in _balance(model, config, policy, layers).values())
    fits, too_big = 0, last + 1
    while too_big - fits > 1:
        middle = (fits + too_big) // 2
        if planned_bytes(model, plan(middle), config, policy) <= budget:
            fits = middle
        else:
            too_big = middle
    return plan(fits)


def _balance(
    model: nn.Module, config: FactorConfig, policy: RankPolicy, layers: Collection[str] | None = None
) -> dict[str, tuple[float, int]]:
    """Layer name -> (its rank over the widest layer's, (u_max / u) ** balance; its largest factorised
    rank), for ``layers`` (default: all)."""
    shapes = factor_shapes(model)
    if layers is not None:
        shapes = {name: shape for name, shape in shapes.items() if name in layers}
    units = {name: unit_codes(shape, config.seeded) for name, shape in shapes.items()}
    widest = max(units.values())
    return {
        name: ((widest / units[name]) ** policy.balance, largest_factor_rank(shape, config.seeded))
        for name, shape in shapes.items()
    }
