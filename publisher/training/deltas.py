"""Trainable deltas on frozen tensors, each exporting the codec records a device applies.

Each delta is a ``torch.nn.utils.parametrize`` parametrization: the module keeps its deployed tensor
frozen and sees ``W + Δ``. In quantised mode Δ is computed from integer codes exactly as a device
computes it (publisher.training.quantiser), so the trained model and the device's model have the same weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from codec.arrays import WireArray, pack
from codec.records import DenseRecord, LowRankRecord, Record, SparseRecord
from codec.seeded import Factor, SeededSigns, factor_codes
from publisher.training.quantiser import (
    QuantisedLowRank,
    QuantisedValues,
    bfloat16_scale,
    exact_product,
    levels_of,
    quantise,
)

FIXED_SIDES = (None, "u", "v")


class Delta(nn.Module):
    """A parametrization ``W -> W + Δ``; ``quantised`` switches Δ to the codes devices receive."""

    def __init__(self, shape: tuple[int, ...], dtype: str, levels: int | None = None) -> None:
        super().__init__()
        if levels is not None and not 1 <= levels <= levels_of(dtype):
            raise ValueError(f"{dtype} codes allow 1 to {levels_of(dtype)} levels each side, not {levels}")
        self.shape = tuple(shape)
        self.dtype = dtype
        self.levels = levels_of(dtype) if levels is None else levels
        self.quantised = False

    def delta(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().reshape(weight.shape)

    def records(self, name: str) -> list[Record]:
        """The records that make a device's tensor ``name`` equal to this quantised ``W + Δ``."""
        raise NotImplementedError


#: Rank above which a seeded factor's steps are damped (``rank_damping``).
UNDAMPED_RANK = 8


def rank_damping(rank: int) -> float:
    """The fixed factor's extra scale: min(1, √(UNDAMPED_RANK / rank)).

    Adam moves every trained code about the same step whatever the rank, and the r terms of a rank-r
    product add up, so ΔW moves about √r times as far a step. Shrinking the fixed factor (which, with
    Adam, acts as a learning rate on ΔW) keeps the step of high ranks that of rank 8. On the validation
    split the drift CNN at ranks of 24 and more lost 3 points without it (docs/method.md); below rank 8,
    larger steps were worse, so low ranks are left as they are. The scale is folded into the sent
    factor's, so it changes training, never the format.
    """
    return min(1.0, math.sqrt(UNDAMPED_RANK / rank))


class LowRankDelta(Delta):
    """Δ = U·V on the out × rest view; V starts at zero so training starts at the deployed model.

    U starts as Gaussian with variance 1/rank. Zeroing the input side V (not U, as LoRA does) lets V
    receive gradients from the first step and move the layer's outputs as fast as a full fine-tune.

    ``fixed="u"`` or ``"v"`` freezes that factor as ±1 signs from the codec's seeded generator times
    ``fixed_scale`` (1/√k, times ``rank_damping``; Konečný et al. 2016, structured updates): only the
    other factor is trained and sent, the record carries the fixed one as its seed and devices
    regenerate it.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        rank: int,
        dtype: str = "i8",
        seed: int = 0,
        fixed: str | None = None,
        levels: int | None = None,
    ) -> None:
        super().__init__(shape, dtype, levels)
        out, rest = shape[0], math.prod(shape[1:])
        self.fixed = fixed
        self.seed = seed
        if fixed is None:
            generator = torch.Generator().manual_seed(seed)
            self.u = nn.Parameter(torch.randn(out, rank, generator=generator) / math.sqrt(rank))
            self.v = nn.Parameter(torch.zeros(rank, rest))
        elif fixed == "u":
            self.fixed_scale = float(np.float32(rank_damping(rank) / math.sqrt(rank)))
            self.register_buffer("u", _seeded_signs((out, rank), seed) * self.fixed_scale)
            self.v = nn.Parameter(torch.zeros(rank, rest))
        elif fixed == "v":
            self.u = nn.Parameter(torch.zeros(out, rank))
            self.fixed_scale = float(np.float32(rank_damping(rank) / math.sqrt(rest)))
            self.register_buffer("v", _seeded_signs((rank, rest), seed) * self.fixed_scale)
        else:
            raise ValueError(f"fixed must be one of {FIXED_SIDES}")

    def delta(self) -> torch.Tensor:
        if not self.quantised:
            return self.u @ self.v
        if self.fixed is None:
            return QuantisedLowRank.apply(self.u, self.v, self.dtype, self.levels)
        fixed, trained = (self.u, self.v) if self.fixed == "u" else (self.v, self.u)
        return FixedSignLowRank.apply(fixed, trained, self.fixed_scale, self.fixed, self.dtype, self.levels)

    def records(self, name: str) -> list[Record]:
        u, u_scale = self._factor("u", self.u)
        v, v_scale = self._factor("v", self.v)
        return [LowRankRecord(name, self.shape, u, u_scale, v, v_scale)]

    def _factor(self, side: str, values: torch.Tensor) -> tuple[Factor, WireArray]:
        """One factor as sent and its one scale: seeded signs with scale 1 when fixed, else codes (whose
        scale carries the fixed factor's too, when there is one)."""
        if side == self.fixed:
            return SeededSigns(tuple(values.shape), self.seed), pack(_one_scale(1.0), "f32")
        codes, scale = quantise(values, self.dtype, self.levels)
        if self.fixed is not None:
            scale = folded_scale(scale, self.fixed_scale)
        return pack(_int_codes(codes), self.dtype), pack(_one_scale(scale), "f32")


def folded_scale(scale: torch.Tensor, fixed_scale: float) -> torch.Tensor:
    """The one scale a seeded record sends for its trained factor: float32(scale × fixed_scale), rounded
    to a bfloat16 as every trained scale is (publisher.training.quantiser.bfloat16_scale).

    The seeded factor's own scale is then 1.0, which a device multiplies by exactly, and which the
    payload's template dictionary already holds (4 bytes fewer a record than sending 1/√k).
    """
    return bfloat16_scale(torch.tensor(np.float32(float(scale)) * np.float32(fixed_scale)))


class FixedSignLowRank(torch.autograd.Function):
    """ΔW = S·Qv ⊙ s (or Qu·S ⊙ s with U trained) as devices compute it from a seeded sign factor S.

    The fixed factor is ``S * fixed_scale``; the record sends S with scale 1 and the trained factor's
    codes with the folded scale s = scale × fixed_scale. Only the trained factor is quantised, and its
    gradient passes straight through the rounding.
    """

    @staticmethod
    def forward(  # noqa: ANN001
        ctx, fixed: torch.Tensor, trained: torch.Tensor, fixed_scale: float, side: str, dtype: str, levels: int
    ) -> torch.Tensor:
        signs = torch.sign(fixed)
        codes, scale = quantise(trained, dtype, levels)
        ctx.side = side
        ctx.save_for_backward(fixed)
        product = exact_product(signs, codes, levels) if side == "u" else exact_product(codes, signs, levels)
        return product * folded_scale(scale, fixed_scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor, None, None, None, None]:  # noqa: ANN001
        (fixed,) = ctx.saved_tensors
        return None, (fixed.T @ grad if ctx.side == "u" else grad @ fixed.T), None, None, None, None


class DenseDelta(Delta):
    """Δ is a whole tensor of codes with one scale (biases, norm parameters, layers too small to factor)."""

    def __init__(self, shape: tuple[int, ...], dtype: str = "i8", levels: int | None = None) -> None:
        super().__init__(shape, dtype, levels)
        self.values = nn.Parameter(torch.zeros(shape))

    def delta(self) -> torch.Tensor:
        return QuantisedValues.apply(self.values, self.dtype, self.levels) if self.quantised else self.values

    def records(self, name: str) -> list[Record]:
        codes, scale = quantise(self.values, self.dtype, self.levels)
        return [DenseRecord(name, "add", pack(_int_codes(codes), self.dtype), pack(_one_scale(scale), "f32"))]


class SparseDelta(Delta):
    """Δ is non-zero only at fixed flat positions (top-k sparse fine-tuning)."""

    def __init__(self, shape: tuple[int, ...], positions: np.ndarray, dtype: str = "i8") -> None:
        super().__init__(shape, dtype)
        positions = np.asarray(positions, np.int64)
        if positions.size == 0 or (positions.size > 1 and np.any(np.diff(positions) <= 0)):
            raise ValueError("sparse positions must be a non-empty, strictly increasing array")
        self.register_buffer("positions", torch.from_numpy(positions))
        self.values = nn.Parameter(torch.zeros(positions.size))

    def delta(self) -> torch.Tensor:
        values = QuantisedValues.apply(self.values, self.dtype, self.levels) if self.quantised else self.values
        return torch.zeros(math.prod(self.shape)).scatter(0, self.positions, values)

    def records(self, name: str) -> list[Record]:
        codes, scale = quantise(self.values, self.dtype, self.levels)
        gaps = np.diff(self.positions.numpy(), prepend=0).astype(np.uint32)
        return [
            SparseRecord(
                name, self.shape, "add", pack(gaps, "u32"),
                pack(_int_codes(codes), self.dtype), pack(_one_scale(scale), "f32"),
            )
        ]


class SignDelta(Delta):
    """Δ = scale · sign pattern, the pattern fixed and the one scale trainable (BitDelta style)."""

    def __init__(self, signs: torch.Tensor, scale: float) -> None:
        super().__init__(tuple(signs.shape), "b1")
        self.register_buffer("signs", torch.where(signs > 0, 1.0, -1.0))
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def delta(self) -> torch.Tensor:
        """signs × the scale as sent (a bfloat16); the gradient passes straight through the rounding."""
        return self.signs * (self.scale + (bfloat16_scale(self.scale.detach()) - self.scale.detach()))

    def records(self, name: str) -> list[Record]:
        return [
            DenseRecord(
                name, "add", pack(self.signs.numpy().astype(np.int8), "b1"),
                pack(_one_scale(bfloat16_scale(self.scale.detach())), "f32"),
            )
        ]


def _seeded_signs(shape: tuple[int, int], seed: int) -> torch.Tensor:
    """The ±1 codes a device regenerates for a seeded factor (codec.seeded), as float32."""
    return torch.from_numpy(factor_codes(SeededSigns(shape, seed)).astype(np.float32))


def _int_codes(codes: torch.Tensor) -> np.ndarray:
    return codes.numpy().astype(np.int16)


def _one_scale(scale: torch.Tensor | float) -> np.ndarray:
    """A scale array of shape (1,): one float32 scale for a whole tensor or factor."""
    return np.full(1, np.float32(float(scale)), np.float32)
