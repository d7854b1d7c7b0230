"""Building records from float arrays: symmetric quantisation to the format's integer codes."""

from __future__ import annotations

import math

import numpy as np

from codec.arrays import CODE_DTYPES, CODE_MAX, pack, round_to_bfloat16
from codec.records import DenseRecord, FullRecord, LowRankRecord, SparseRecord


def quantise(
    values: np.ndarray, dtype: str, axis: int | None, bfloat16_scales: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric codes and float32 scales (one per slice along ``axis``, or one for all).

    ``values ≈ codes * scale``. For ``b1`` the codes are signs and the scale is the mean magnitude.
    ``bfloat16_scales`` rounds the scales to bfloat16 first (payload format 2 sends those in two bytes).
    """
    values = np.asarray(values, np.float32)
    reduce_axes = None if axis is None else tuple(a for a in range(values.ndim) if a != axis)
    if dtype == "b1":
        scale = np.mean(np.abs(values), axis=reduce_axes, keepdims=True, dtype=np.float32)
        scale = round_to_bfloat16(scale) if bfloat16_scales else scale
        codes = np.where(values > 0, 1, -1).astype(np.int8)
    else:
        peak = np.max(np.abs(values), axis=reduce_axes, keepdims=True)
        scale = (peak / np.float32(CODE_MAX[dtype])).astype(np.float32)
        scale = round_to_bfloat16(scale) if bfloat16_scales else scale
        safe = np.where(scale > 0, scale, np.float32(1))
        codes = np.clip(np.rint(values / safe), -CODE_MAX[dtype], CODE_MAX[dtype])
        codes = codes.astype(np.int16 if dtype == "i16" else np.int8)
    return codes, scale.reshape(-1).astype(np.float32)


def lowrank_record(name: str, shape: tuple[int, ...], u: np.ndarray, v: np.ndarray, dtype: str = "i8") -> LowRankRecord:
    """A lowrank record for ΔW ≈ U·V, with U scaled per row and V per column."""
    out, rest = shape[0], math.prod(shape[1:])
    if u.shape[0] != out or v.shape[1] != rest or u.shape[1] != v.shape[0]:
        raise ValueError(f"factors {u.shape}·{v.shape} do not make a {out} × {rest} update")
    u_codes, u_scale = quantise(u, dtype, axis=0)
    v_codes, v_scale = quantise(v, dtype, axis=1)
    return LowRankRecord(
        name, tuple(shape), pack(u_codes, dtype), pack(u_scale, "f32"), pack(v_codes, dtype), pack(v_scale, "f32")
    )


def dense_record(
    name: str, values: np.ndarray, mode: str = "add", dtype: str = "f32", per_row: bool = False,
    bfloat16_scales: bool = False,
) -> DenseRecord:
    """A dense record; with a code dtype, one scale per tensor (or per row with ``per_row``), rounded to
    bfloat16 with ``bfloat16_scales``."""
    values = np.asarray(values, np.float32)
    if dtype == "f32":
        return DenseRecord(name, mode, pack(values, "f32"))
    if dtype not in CODE_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    codes, scale = quantise(values, dtype, axis=0 if per_row else None, bfloat16_scales=bfloat16_scales)
    return DenseRecord(name, mode, pack(codes, dtype), pack(scale, "f32"))


def sparse_record(
    name: str, shape: tuple[int, ...], positions: np.ndarray, values: np.ndarray, mode: str = "add", dtype: str = "f32"
) -> SparseRecord:
    """A sparse record for strictly increasing flat positions and their values."""
    positions = np.asarray(positions, np.int64)
    gaps = np.diff(positions, prepend=0).astype(np.uint32)
    values = np.asarray(values, np.float32)
    if dtype == "f32":
        return SparseRecord(name, tuple(shape), mode, pack(gaps, "u32"), pack(values, "f32"))
    codes, scale = quantise(values, dtype, axis=None)
    return SparseRecord(name, tuple(shape), mode, pack(gaps, "u32"), pack(codes, dtype), pack(scale, "f32"))


def full_record(data: bytes, name: str = "model") -> FullRecord:
    """A record carrying a whole model file."""
    return FullRecord(name, bytes(data))
