"""The payload size of a rank plan before training: encoded with worst-case codes of the planned shapes.

Trained codes are unknown until training ends, so a plan is sized with codes zstd compresses no better
than trained ones: uniformly random codes (incompressible) and codes with a fraction of zeros, the
largest payload of all (RankPolicy.zero_fractions says why both).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from publisher.training.factorised import FactorConfig, factorise
from publisher.training.rank_policy import DEFAULT_POLICY, RankPolicy


def planned_bytes(
    model: nn.Module, ranks: Mapping[str, int], config: FactorConfig, policy: RankPolicy = DEFAULT_POLICY
) -> int:
    """Payload bytes of these ranks with worst-case codes: the largest payload of codes drawn with each of
    the policy's zero fractions (the other values equally likely)."""
    delta_set = factorise(model, ranks, config)
    generator = torch.Generator().manual_seed(0)
    sizes = []
    with torch.no_grad():
        for zeros in policy.zero_fractions:
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
