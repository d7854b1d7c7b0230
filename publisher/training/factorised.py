"""The method: every Linear and Conv2d weight W frozen, trainable factors so it becomes W + U·V.

A Conv2d weight (out, in/groups, kh, kw) is factorised on its out × (in/groups·kh·kw) view, which is
what a codec lowrank record carries; grouped and depthwise convolutions need nothing special. A layer
whose factors would hold no fewer numbers than the tensor itself (for example a depthwise kernel with
rest = 9 at rank ≥ 9) is sent as a dense delta of the same codes instead. Biases and norm
parameters (every parameter of at most one dimension) are optionally trained and sent as dense i8
deltas.

rankcast's default (``seeded``): the larger factor of every layer is not trained but fixed to ±1
signs from a seed (the structure of Konečný et al. 2016); the record carries the seed, devices
regenerate the signs, and only the smaller factor is trained and sent, as ternary codes (``trit``,
1.6 bits a code, with one scale). A rank unit then costs min(out, rest) codes instead of out + rest.
``seeded=False`` is the paper's form, U and V both trained and sent; on the benchmark's narrow layers
it needs 1.4-3.3× the bytes for the same accuracy (docs/method.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from codec.limits import DEFAULT_LIMITS
from publisher.errors import ConfigError
from publisher.training.delta_set import DeltaSet
from publisher.training.deltas import Delta, DenseDelta, LowRankDelta
from publisher.training.quantiser import levels_of

FACTOR_DTYPES = ("b1", "trit", "i4", "i8")


@dataclass(frozen=True)
class FactorConfig:
    """Factor codes (b1 signs, trit, i4 or i8; ``levels`` a side), whether small tensors train, whether
    the larger factor is seeded signs (rankcast's default) or trained too; ``seed`` fixes U's init (or
    the signs)."""

    dtype: str = "trit"
    levels: int | None = None
    train_small: bool = False
    seeded: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in FACTOR_DTYPES:
            raise ConfigError(f"factor dtype must be one of {FACTOR_DTYPES}, got {self.dtype!r}")
        if self.levels is not None and not 1 <= self.levels <= levels_of(self.dtype):
            raise ConfigError(f"{self.dtype} codes allow 1 to {levels_of(self.dtype)} levels, not {self.levels}")


DEFAULT_FACTORS = FactorConfig()
#: The paper's form: U and V both trained and sent.
BOTH_FACTORS = FactorConfig(seeded=False)


def factor_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of every Linear and Conv2d weight, in model order."""
    return {
        f"{name}.weight": tuple(module.weight.shape)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | nn.Conv2d)
    }


def small_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of every parameter of at most one dimension (biases, norm scales)."""
    return {name: tuple(p.shape) for name, p in model.named_parameters() if p.dim() <= 1}


def view_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """(out, rest): the 2-D view a lowrank record uses."""
    return shape[0], math.prod(shape[1:])


def unit_codes(shape: tuple[int, ...], seeded: bool = False) -> int:
    """Codes sent per unit of rank: both factors' (out + rest), or only the smaller one's when seeded."""
    out, rest = view_2d(shape)
    return min(out, rest) if seeded else out + rest


def fixed_side(shape: tuple[int, ...]) -> str:
    """The factor a seeded update fixes: the larger one ("u" when out >= rest), so the sent one is small."""
    out, rest = view_2d(shape)
    return "u" if out >= rest else "v"


def sends_dense(shape: tuple[int, ...], rank: int, seeded: bool = False) -> bool:
    """True when the sent codes of rank-``rank`` factors would be at least as many as the tensor's, or the
    rank is past what devices decode (codec.limits: a 4096 -> 10 layer could take rank 4095)."""
    return rank * unit_codes(shape, seeded) >= math.prod(view_2d(shape)) or rank > DEFAULT_LIMITS.max_rank


def largest_factor_rank(shape: tuple[int, ...], seeded: bool = False, limit: int | None = None) -> int:
    """The largest rank whose sent factors hold fewer codes than the tensor (at most ``limit``)."""
    rank = 0
    while (limit is None or rank < limit) and not sends_dense(shape, rank + 1, seeded):
        rank += 1
    return rank


def uniform_ranks(model: nn.Module, rank: int) -> dict[str, int]:
    """The same rank for every factorisable layer."""
    if rank < 1:
        raise ConfigError(f"rank must be at least 1, got {rank}")
    return dict.fromkeys(factor_shapes(model), rank)


def factorise(model: nn.Module, ranks: Mapping[str, int], config: FactorConfig = DEFAULT_FACTORS) -> DeltaSet:
    """A copy of ``model`` with factors of the given rank per layer (rank 0 or absent: layer unchanged).

    The trained factor on the input side starts at zero (V, or U when V is seeded), so the wrapped
    model computes exactly the deployed model's outputs.
    """
    shapes = factor_shapes(model)
    unknown = set(ranks) - set(shapes)
    if unknown:
        raise ConfigError(f"ranks name layers the model lacks or cannot factorise: {sorted(unknown)}")
    deltas: dict[str, Delta] = {}
    factored = 0
    for name, shape in shapes.items():
        rank = ranks.get(name, 0)
        if rank <= 0:
            continue
        if sends_dense(shape, rank, config.seeded):
            deltas[name] = DenseDelta(shape, config.dtype, config.levels)
        else:
            fixed = fixed_side(shape) if config.seeded else None
            # Consecutive seeds: payload format 2 then sends none of them but the first (codec.compact).
            deltas[name] = LowRankDelta(shape, rank, config.dtype, config.seed + factored, fixed, config.levels)
            factored += 1
    if config.train_small:
        deltas.update({name: DenseDelta(shape, "i8") for name, shape in small_shapes(model).items()})
    return DeltaSet(model, _in_model_order(model, deltas))


def _in_model_order(model: nn.Module, deltas: dict[str, Delta]) -> dict[str, Delta]:
    return {name: deltas[name] for name, _ in model.named_parameters() if name in deltas}
