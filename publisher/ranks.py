"""Per-layer ranks under a byte budget, from the singular spectrum of a short fine-tune's delta.

A short full fine-tune shows where the model wants to move: the squared singular values of each
layer's delta ΔW are the energy that a rank-k factor of that layer can capture (Eckart-Young). Every
extra rank costs (out + rest) codes, so ranks are handed out greedily by captured energy per byte;
within a layer the spectrum decreases, so the greedy choice is always a prefix and the allocation is
the exact optimum of this knapsack relaxation. Half the budget first buys a uniform rank, a hedge
against a noisy spectrum (on a validation split neither pure rule won everywhere). The plan is then
checked against the budget by encoding a payload of the planned shapes filled with uniformly random
codes, which zstd cannot compress better than trained codes; units are dropped, last first, until it
fits.

With a seeded side the spectrum says nothing: a random k-dimensional column space captures about
k/out of a delta's energy whatever its singular values. Seeded updates instead get the largest
*balanced* ranks that fit (``balanced_ranks_under_budget``): layers whose rank unit is cheap (few
outputs or few inputs) get proportionally more rank, and the widest layers wait until the budget
gives them several ranks, by rules chosen on a validation split; they need no warm-up fine-tune
(docs/method.md).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Mapping

import torch
from torch import nn

from publisher.errors import BudgetError
from publisher.factorised import (
    BOTH_FACTORS,
    DEFAULT_FACTORS,
    FactorConfig,
    factor_shapes,
    factorise,
    sends_dense,
    unit_codes,
    view_2d,
)

CODE_BYTES = {"i8": 1.0, "i4": 0.5, "trit": 0.2, "b1": 0.125}
RECORD_OVERHEAD = 40  # name, shape, dtypes and two one-element scales, after zstd with the template dictionary
#: Seeded ranks lean towards layers whose rank unit is cheap: rank ∝ (u_max / u) ** BALANCE, halfway
#: (geometrically) between one rank for all (0) and the same codes for every layer (1). On the
#: validation split 0.5 was the best of the three, or level with it, from 300 to 800 B (docs/method.md).
BALANCE = 0.5
#: The balanced scale moves in quarter ranks of the widest layer, so budgets between two ranks of the
#: widest layer still buy rank for the cheaper layers.
SCALE_STEPS = 4
#: The layers with the widest rank unit (the CNN's 512->128, the MLP's 256->256: most of each model's
#: weights) join a seeded plan only from this rank. A seeded rank-r factor of a wide layer reaches r of
#: its hundreds of directions; below about 7, the same bytes bought more accuracy as rank in the cheaper
#: layers. On the validation split (two seeds, six cases) leaving them out was 17.7 / 4.6 / 1.3 points
#: better at 200 / 290 / 420 B while they would get ranks 1-5, and 0.4-0.5 points worse from rank 8-9
#: (docs/method.md).
WIDEST_MIN_RANK = 7
#: ... and only when this many other layers remain: on both validated models two or three did, and an
#: update of one layer (a two-layer model's output layer: a linear probe) was never validated.
MIN_LAYERS_LEFT = 2
#: Fractions of zero codes a budget plan is checked with. Uniform codes (none forced to zero) are
#: incompressible, but on payloads of a few hundred bytes zstd can spend more on the literals of
#: partly-zero codes (a Huffman table that does not pay for itself): up to 4% more, measured at
#: 60-80% zeros, about what trained trit codes have.
ZERO_FRACTIONS = (0.0, 0.6, 0.7, 0.8)


def spectra(model: nn.Module, deltas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Squared singular values of every factorisable layer's delta on its out × rest view."""
    return {
        name: torch.linalg.svdvals(deltas[name].reshape(view_2d(shape)).double()) ** 2
        for name, shape in factor_shapes(model).items()
    }


def planned_bytes(model: nn.Module, ranks: Mapping[str, int], config: FactorConfig) -> int:
    """Payload bytes of these ranks with worst-case codes: the largest payload of codes drawn with
    ZERO_FRACTIONS of zeros (the other values equally likely)."""
    delta_set = factorise(model, ranks, config)
    generator = torch.Generator().manual_seed(0)
    sizes = []
    with torch.no_grad():
        for zeros in ZERO_FRACTIONS:
            for delta in delta_set.deltas.values():
                for parameter in delta.parameters():
                    parameter.copy_(_random_codes(parameter.shape, delta.dtype, delta.levels, zeros, generator))
            sizes.append(len(delta_set.encode()[0]))
    return max(sizes)


def _random_codes(
    shape: torch.Size, dtype: str, levels: int, zeros: float, generator: torch.Generator
) -> torch.Tensor:
    """Values that quantise (step 1) to codes -levels..levels, a ``zeros`` fraction (at least) zero and
    the rest equally likely; ±1 for sign codes. The first value is ``levels``, which fixes the step."""
    if dtype == "b1":
        return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
    codes = torch.randint(-levels, levels + 1, shape, generator=generator).float()
    codes[torch.rand(shape, generator=generator) < zeros] = 0.0
    codes.view(-1)[0] = levels
    return codes


def balanced_ranks(
    model: nn.Module, scale: float, config: FactorConfig = DEFAULT_FACTORS, layers: Collection[str] | None = None
) -> dict[str, int]:
    """Ranks for a seeded update at ``scale`` (the widest layer's rank, fractional): a layer whose rank
    unit costs ``u`` codes gets ``scale · (u_max / u) ** BALANCE`` (at least 1, at most its largest
    factorised rank). ``layers`` limits the plan to those layers (default: every factorisable one)."""
    balance = _balance(model, config, layers)
    return {name: min(cap, max(1, math.floor(scale * weight))) for name, (weight, cap) in balance.items()}


def balanced_ranks_under_budget(
    model: nn.Module, budget: int, config: FactorConfig = DEFAULT_FACTORS
) -> dict[str, int]:
    """The largest balanced ranks (``balanced_ranks``, scale on a 1/SCALE_STEPS grid) whose payload (with
    worst-case codes) fits ``budget``.

    The layers with the widest rank unit are left out (rank 0) while the budget would give them fewer
    than WIDEST_MIN_RANK ranks and at least MIN_LAYERS_LEFT other layers remain; their bytes go to the
    other layers, and the smallest plan is rank 1 on each of those.
    """
    units = {name: unit_codes(shape, config.seeded) for name, shape in factor_shapes(model).items()}
    if not units:
        raise BudgetError("the model has no Linear or Conv2d layer to factorise")
    narrower = [name for name, unit in units.items() if unit < max(units.values())]
    may_wait = len(narrower) >= MIN_LAYERS_LEFT
    # the widest layers' rank is the balanced scale: they get WIDEST_MIN_RANK when that scale fits
    if may_wait and planned_bytes(model, balanced_ranks(model, WIDEST_MIN_RANK, config), config) > budget:
        layers = narrower
    else:
        layers = list(units)
    plan = _largest_fitting(model, layers, budget, config)
    if plan is None:
        what = "its narrower layers" if layers is narrower else "every layer"
        raise BudgetError(f"no rank-1 update of {what} fits in {budget} bytes; raise the budget")
    return plan


def _largest_fitting(model: nn.Module, layers: list[str], budget: int, config: FactorConfig) -> dict[str, int] | None:
    """The largest balanced ranks of ``layers`` that fit ``budget`` (binary search on the scale grid, whose
    step 0 is rank 1 on each layer), or None when that does not fit."""
    if planned_bytes(model, balanced_ranks(model, 0, config, layers), config) > budget:
        return None
    # from this step on every layer is at its largest factorised rank
    last = max(math.ceil(cap * SCALE_STEPS / weight) for weight, cap in _balance(model, config, layers).values())
    fits, too_big = 0, last + 1
    while too_big - fits > 1:
        middle = (fits + too_big) // 2
        if planned_bytes(model, balanced_ranks(model, middle / SCALE_STEPS, config, layers), config) <= budget:
            fits = middle
        else:
            too_big = middle
    return balanced_ranks(model, fits / SCALE_STEPS, config, layers)


def _balance(
    model: nn.Module, config: FactorConfig, layers: Collection[str] | None = None
) -> dict[str, tuple[float, int]]:
    """Layer name -> (its rank over the widest layer's, (u_max / u) ** BALANCE; its largest factorised
    rank), for ``layers`` (default: all)."""
    shapes = factor_shapes(model)
    if layers is not None:
        shapes = {name: shape for name, shape in shapes.items() if name in layers}
    units = {name: unit_codes(shape, config.seeded) for name, shape in shapes.items()}
    widest = max(units.values())
    return {
        name: ((widest / units[name]) ** BALANCE, _max_rank(shape, math.prod(shape), config.seeded))
        for name, shape in shapes.items()
    }


def allocate_ranks(
    model: nn.Module, deltas: Mapping[str, torch.Tensor], budget: int, config: FactorConfig = BOTH_FACTORS
) -> dict[str, int]:
    """Ranks per layer whose payload fits in ``budget`` bytes, chosen by delta energy per byte."""
    floor = planned_bytes(model, {}, config)
    if floor >= budget:
        raise BudgetError(
            f"a budget of {budget} bytes leaves nothing for factors: biases/norms alone take {floor} bytes; "
            "raise the budget or train without small tensors"
        )
    chosen = _greedy(model, spectra(model, deltas), budget - floor, config)
    while chosen and planned_bytes(model, _count(chosen), config) > budget:
        chosen.pop()
    if not chosen:
        raise BudgetError(f"no layer fits a rank-1 factor in {budget} bytes; raise the budget")
    return _count(chosen)


def _greedy(
    model: nn.Module, energy: Mapping[str, torch.Tensor], allowance: float, config: FactorConfig
) -> list[str]:
    """Layer names in order of acceptance, one entry per rank unit.

    Half the allowance first buys the largest uniform rank (a hedge: a short fine-tune's spectrum is a
    noisy guess of where the final update lives), the rest goes by energy per byte.
    """
    shapes = factor_shapes(model)
    unit = {name: unit_codes(shape, config.seeded) * CODE_BYTES[config.dtype] for name, shape in shapes.items()}
    limit = {name: _max_rank(shape, len(energy[name]), config.seeded) for name, shape in shapes.items()}
    chosen: list[str] = []
    spent = 0.0
    for rank in range(1, max(limit.values(), default=0) + 1):
        layers = [name for name in shapes if rank <= limit[name]]
        cost = sum(unit[name] + (RECORD_OVERHEAD if rank == 1 else 0) for name in layers)
        if spent + cost > allowance / 2:
            break
        chosen.extend(layers)
        spent += cost
    heap = [(-float(energy[n][chosen.count(n)]) / unit[n], n) for n in shapes if chosen.count(n) < limit[n]]
    heapq.heapify(heap)
    while heap:
        _, name = heapq.heappop(heap)
        index = chosen.count(name)
        cost = unit[name] + (RECORD_OVERHEAD if index == 0 else 0)
        if spent + cost > allowance:
            continue
        chosen.append(name)
        spent += cost
        if index + 1 < limit[name]:
            heapq.heappush(heap, (-float(energy[name][index + 1]) / unit[name], name))
    return chosen


def _max_rank(shape: tuple[int, ...], available: int, seeded: bool) -> int:
    """Largest rank whose sent factors are smaller than the tensor (and that the spectrum covers)."""
    rank = 0
    while rank < available and not sends_dense(shape, rank + 1, seeded):
        rank += 1
    return rank


def _count(chosen: list[str]) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for name in chosen:
        ranks[name] = ranks.get(name, 0) + 1
    return ranks
