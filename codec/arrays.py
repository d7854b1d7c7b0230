"""Numeric arrays as they travel: a dtype name, a shape and little-endian bytes.

Float arrays are IEEE-754 binary32. Integer code arrays hold quantised values: ``i8`` and ``i16``
(symmetric, the most negative value is refused), ``i4`` (two 4-bit codes per byte, low nibble first),
``trit`` (ternary codes -1/0/+1, five per byte as base-3 digits, first code least significant: 1.6
bits a code) and ``b1`` (sign bits, least significant bit first: 1 is +1, 0 is -1). ``u32`` holds
index gaps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from codec.errors import FormatError, LimitError, NonFiniteError
from codec.limits import Limits

FLOAT_DTYPES = ("f32",)
CODE_DTYPES = ("trit", "i4", "i8", "i16", "b1")
INDEX_DTYPES = ("u32",)
ALL_DTYPES = FLOAT_DTYPES + CODE_DTYPES + INDEX_DTYPES

#: Largest code magnitude per code dtype (symmetric ranges).
CODE_MAX = {"trit": 1, "i4": 7, "i8": 127, "i16": 32767, "b1": 1}

#: Codes per byte of ``trit`` arrays, and the weight of each base-3 digit within a byte.
TRITS_PER_BYTE = 5
_TRIT_WEIGHTS = 3 ** np.arange(TRITS_PER_BYTE, dtype=np.int32)

_NUMPY = {"f32": np.dtype("<f4"), "i8": np.dtype("i1"), "i16": np.dtype("<i2"), "u32": np.dtype("<u4")}


@dataclass(frozen=True)
class WireArray:
    """An array in its travelling form; ``data`` is exactly ``byte_length(dtype, shape)`` bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_msgpack(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape), "data": self.data}


def byte_length(dtype: str, count: int) -> int:
    """Bytes that ``count`` elements of ``dtype`` occupy on the wire."""
    if dtype == "i4":
        return (count + 1) // 2
    if dtype == "trit":
        return -(-count // TRITS_PER_BYTE)
    if dtype == "b1":
        return (count + 7) // 8
    return count * _NUMPY[dtype].itemsize


def pack(values: np.ndarray, dtype: str) -> WireArray:
    """Encode ``values`` (floats for f32, integer codes otherwise) as a WireArray of ``dtype``."""
    shape = tuple(int(d) for d in values.shape)
    flat = np.ascontiguousarray(values).reshape(-1)
    if dtype == "i4":
        codes = flat.astype(np.int8)
        if codes.size % 2:
            codes = np.concatenate([codes, np.zeros(1, np.int8)])
        nibbles = codes.view(np.uint8) & 0x0F
        data = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()
    elif dtype == "trit":
        data = _pack_trits(flat)
    elif dtype == "b1":
        data = np.packbits(flat > 0, bitorder="little").tobytes()
    else:
        data = flat.astype(_NUMPY[dtype]).tobytes()
    return WireArray(dtype, shape, data)


def unpack(array: WireArray) -> np.ndarray:
    """Decode a validated WireArray: float32 for f32, int8/int16 codes, uint32 for u32."""
    count = array.size
    if array.dtype == "i4":
        raw = np.frombuffer(array.data, np.uint8)
        nibbles = np.empty(raw.size * 2, np.uint8)
        nibbles[0::2] = raw & 0x0F
        nibbles[1::2] = raw >> 4
        codes = nibbles[:count].astype(np.int8)
        codes[codes > 7] -= 16
        return codes.reshape(array.shape)
    if array.dtype == "trit":
        return _unpack_trits(array.data, count).reshape(array.shape)
    if array.dtype == "b1":
        bits = np.unpackbits(np.frombuffer(array.data, np.uint8), count=count, bitorder="little")
        return (bits.astype(np.int8) * 2 - 1).reshape(array.shape)
    return np.frombuffer(array.data, _NUMPY[array.dtype], count).reshape(array.shape)


def _pack_trits(codes: np.ndarray) -> bytes:
    """Codes in -1..1 as base-3 digits (code + 1), five per byte, the first code least significant."""
    digits = codes.astype(np.int32) + 1
    if digits.size and (digits.min() < 0 or digits.max() > 2):
        raise FormatError("trit codes must be -1, 0 or +1")
    padded = np.zeros(byte_length("trit", digits.size) * TRITS_PER_BYTE, np.int32)
    padded[: digits.size] = digits
    return (padded.reshape(-1, TRITS_PER_BYTE) @ _TRIT_WEIGHTS).astype(np.uint8).tobytes()


def _unpack_trits(data: bytes, count: int) -> np.ndarray:
    """``count`` codes (int8, -1..1) from validated ``trit`` bytes."""
    raw = np.frombuffer(data, np.uint8).astype(np.int32)
    digits = (raw[:, None] // _TRIT_WEIGHTS) % 3
    return (digits.reshape(-1)[:count] - 1).astype(np.int8)


def read_shape(value: object, limits: Limits, what: str) -> tuple[int, ...]:
    """Validate a shape from the wire: a list of 1..max_dims positive ints within the element limit."""
    if not isinstance(value, list) or not 1 <= len(value) <= limits.max_dims:
        raise FormatError(f"{what}: shape must be a list of 1 to {limits.max_dims} dimensions")
    if not all(type(d) is int and d >= 1 for d in value):
        raise FormatError(f"{what}: every dimension must be a positive integer, got {value}")
    if math.prod(value) > limits.max_tensor_elements:
        raise LimitError(
            f"{what}: {math.prod(value)} elements exceed the limit of {limits.max_tensor_elements}"
        )
    return tuple(value)


def read_array(value: object, limits: Limits, what: str, allowed: tuple[str, ...]) -> WireArray:
    """Validate an array map from the wire; checks sizes and code ranges, allocates nothing large."""
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data"}:
        raise FormatError(f"{what}: an array is a map with exactly dtype, shape and data")
    dtype, data = value["dtype"], value["data"]
    if dtype not in allowed:
        raise FormatError(f"{what}: dtype {dtype!r} is not one of {', '.join(allowed)}")
    shape = read_shape(value["shape"], limits, what)
    if not isinstance(data, bytes) or len(data) != byte_length(dtype, math.prod(shape)):
        raise FormatError(f"{what}: data must be {byte_length(dtype, math.prod(shape))} bytes")
    array = WireArray(dtype, shape, data)
    _check_padding_and_range(array, what)
    return array


def _check_padding_and_range(array: WireArray, what: str) -> None:
    count = array.size
    if array.dtype == "b1" and count % 8:
        if array.data[-1] >> (count % 8):
            raise FormatError(f"{what}: padding bits after the last sign bit must be zero")
    elif array.dtype == "trit":
        raw = np.frombuffer(array.data, np.uint8)
        if (raw >= 3**TRITS_PER_BYTE).any():
            raise FormatError(f"{what}: a trit byte holds five base-3 digits, so it must be below 243")
        if count % TRITS_PER_BYTE and raw[-1] >= 3 ** (count % TRITS_PER_BYTE):
            raise FormatError(f"{what}: the padding digits after the last trit code must be zero")
    elif array.dtype == "i4":
        if count % 2 and array.data[-1] >> 4:
            raise FormatError(f"{what}: the padding nibble after the last code must be zero")
        raw = np.frombuffer(array.data, np.uint8)
        if ((raw & 0x0F) == 8).any() or ((raw >> 4) == 8).any():
            raise FormatError(f"{what}: i4 code -8 is outside the symmetric range -7..7")
    elif array.dtype in ("i8", "i16"):
        lowest = -CODE_MAX[array.dtype] - 1
        if (np.frombuffer(array.data, _NUMPY[array.dtype]) == lowest).any():
            raise FormatError(f"{what}: {array.dtype} code {lowest} is outside the symmetric range")
    elif array.dtype == "f32":
        if not np.isfinite(np.frombuffer(array.data, _NUMPY["f32"])).all():
            raise NonFiniteError(f"{what}: float values must be finite (no NaN or Inf)")


def round_to_bfloat16(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), as float32: the scales format 2
    sends in two bytes (the upper half of their float32 bits) are of this form."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return rounded.view(np.float32).reshape(np.shape(values))


def is_bfloat16(values: np.ndarray) -> bool:
    """Whether every float32 value is exactly a bfloat16 (its lower 16 bits are zero)."""
    return not (np.ascontiguousarray(values, np.float32).view(np.uint32) & 0xFFFF).any()
