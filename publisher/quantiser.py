"""Quantisation in torch that reproduces, bit for bit, what a device computes from the codec's codes.

A factor or delta is quantised with one scale per tensor, ``scale = peak / levels`` and
``codes = round(x / scale)``. Per-tensor scales travel as constant per-row/per-column arrays, which
zstd reduces to a few bytes, where per-row scales would cost four bytes a row. The forward passes
below evaluate exactly the device's float32 formulas (see codec.apply), so a model trained with them
and the model rebuilt on a device have identical weights.
"""

from __future__ import annotations

import torch

from codec.arrays import CODE_MAX

_FLOAT32_EXACT = 2**24
#: Step of the MSE-optimal uniform quantiser of a unit Gaussian with 2L+1 levels (Max 1960), by L.
GAUSSIAN_STEP = {1: 1.224, 3: 0.586}


def levels_of(dtype: str) -> int:
    """Largest code magnitude of a codec code dtype (``i8`` -> 127, ``i4`` -> 7)."""
    return CODE_MAX[dtype]


def uniform_codes(values: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-valued float32 codes and the float32 scalar scale with ``values ≈ codes * scale``.

    With 1 or 3 levels a side the step is the Gaussian-optimal one for the values' RMS (outliers
    are clipped), never more than peak / levels; with more levels it is peak / levels.
    """
    values = values.detach().float()
    scale = values.abs().max() / torch.tensor(levels, dtype=torch.float32)
    if levels in GAUSSIAN_STEP:
        rms = values.square().mean().sqrt()
        scale = torch.minimum(scale, (rms * GAUSSIAN_STEP[levels]).float())
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.clamp(torch.round(values / safe), -levels, levels)
    return codes, scale


def exact_product(u_codes: torch.Tensor, v_codes: torch.Tensor, levels: int) -> torch.Tensor:
    """Qu·Qv with every partial sum exact, as float32 (codec.apply.exact_product in torch)."""
    if levels * levels * u_codes.shape[1] < _FLOAT32_EXACT:
        return u_codes @ v_codes
    return (u_codes.double() @ v_codes.double()).float()


class QuantisedLowRank(torch.autograd.Function):
    """ΔW = (su ⊙ (Qu·Qv)) ⊙ sv exactly as devices compute it; gradients pass straight through rounding."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, v: torch.Tensor, levels: int) -> torch.Tensor:  # noqa: ANN001
        u_codes, u_scale = uniform_codes(u, levels)
        v_codes, v_scale = uniform_codes(v, levels)
        ctx.save_for_backward(u_codes * u_scale, v_codes * v_scale)
        return (exact_product(u_codes, v_codes, levels) * u_scale) * v_scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:  # noqa: ANN001
        u_hat, v_hat = ctx.saved_tensors
        return grad @ v_hat.T, u_hat.T @ grad, None


class QuantisedValues(torch.autograd.Function):
    """codes * scale (a dense or sparse record's values); gradients pass straight through rounding."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, levels: int) -> torch.Tensor:  # noqa: ANN001
        codes, scale = uniform_codes(values, levels)
        return codes * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return grad, None
