"""Quantisation in torch that reproduces, bit for bit, what a device computes from the codec's codes.

A factor or delta is quantised with one scale per tensor: ``b1`` codes are signs with the mean
magnitude as scale; the others are uniform, ``codes = round(x / scale)`` with ``scale = peak / levels``
(or a step set by the values' RMS for 1 or 3 levels), rounded to a bfloat16. The scale travels as a
one-element scale array (per-row scales would cost two bytes a row, more than a row's codes at low
rank). The forward passes
below evaluate exactly the device's float32 formulas (see codec.apply), so a model trained with them
and the model rebuilt on a device have identical weights.
"""

from __future__ import annotations

import torch

from codec.arrays import CODE_MAX

_FLOAT32_EXACT = 2**24
#: Step over the values' RMS, by L (2L+1 levels). For 3 levels (trit) 1.6, wider than the Gaussian
#: MSE-optimal 1.224 (Max 1960): more codes are zero, so payloads are smaller, and on the validation
#: split accuracy at the same bytes was higher (docs/method.md). For 7 levels the MSE-optimal 0.651.
RMS_STEP = {1: 1.6, 3: 0.651}


def levels_of(dtype: str) -> int:
    """Largest code magnitude of a codec code dtype (``i8`` -> 127, ``i4`` -> 7)."""
    return CODE_MAX[dtype]


def uniform_codes(values: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-valued float32 codes and the float32 scalar scale with ``values ≈ codes * scale``.

    With 1 or 3 levels a side the step is RMS_STEP times the values' RMS (outliers are clipped), never
    more than peak / levels; with more levels it is peak / levels.
    """
    values = values.detach().float()
    scale = values.abs().max() / torch.tensor(levels, dtype=torch.float32)
    if levels in RMS_STEP:
        rms = values.square().mean().sqrt()
        scale = torch.minimum(scale, (rms * RMS_STEP[levels]).float())
    scale = bfloat16_scale(scale)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.clamp(torch.round(values / safe), -levels, levels)
    return codes, scale


def sign_codes(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """±1 codes (zero counts as +1) and the float32 scalar scale mean(|values|), the scale that
    minimises the squared error for those signs."""
    values = values.detach().float()
    return torch.where(values >= 0, 1.0, -1.0), bfloat16_scale(values.abs().mean())


def bfloat16_scale(scale: torch.Tensor) -> torch.Tensor:
    """A float32 scale rounded to the nearest bfloat16 (ties to even): payload format 2 sends such a
    scale in two bytes instead of four (codec.compact), and the step it loses (at most 2^-8 of the
    scale) is far below a code's."""
    return scale.to(torch.bfloat16).float()


def quantise(values: torch.Tensor, dtype: str, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and scale for a codec code dtype: sign codes for ``b1``, else uniform codes (``levels`` a side)."""
    return sign_codes(values) if dtype == "b1" else uniform_codes(values, levels)


def exact_product(u_codes: torch.Tensor, v_codes: torch.Tensor, levels: int) -> torch.Tensor:
    """Qu·Qv with every partial sum exact, as float32 (codec.apply.exact_product in torch)."""
    if levels * levels * u_codes.shape[1] < _FLOAT32_EXACT:
        return u_codes @ v_codes
    return (u_codes.double() @ v_codes.double()).float()


class QuantisedLowRank(torch.autograd.Function):
    """ΔW = (su ⊙ (Qu·Qv)) ⊙ sv exactly as devices compute it; gradients pass straight through rounding."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, v: torch.Tensor, dtype: str, levels: int) -> torch.Tensor:  # noqa: ANN001
        u_codes, u_scale = quantise(u, dtype, levels)
        v_codes, v_scale = quantise(v, dtype, levels)
        ctx.save_for_backward(u_codes * u_scale, v_codes * v_scale)
        return (exact_product(u_codes, v_codes, levels) * u_scale) * v_scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:  # noqa: ANN001
        u_hat, v_hat = ctx.saved_tensors
        return grad @ v_hat.T, u_hat.T @ grad, None, None


class QuantisedValues(torch.autograd.Function):
    """codes * scale (a dense or sparse record's values); gradients pass straight through rounding."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, dtype: str, levels: int) -> torch.Tensor:  # noqa: ANN001
        codes, scale = quantise(values, dtype, levels)
        return codes * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: ANN001
        return grad, None, None
