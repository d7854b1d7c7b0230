"""Per-tensor update records: what each one says, and strict conversion from and to msgpack maps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from codec.arrays import CODE_DTYPES, WireArray, read_array, read_shape, unpack
from codec.errors import FormatError, LimitError
from codec.limits import Limits
from codec.seeded import Factor, SeededSigns, read_factor

LOWRANK_CODES = ("b1", "trit", "i4", "i8", "i16")
MODES = ("add", "set")


@dataclass(frozen=True)
class LowRankRecord:
    """Adds (su ⊙ (U·V)) ⊙ sv to a weight seen as 2-D: out × (product of the other dimensions).

    At most one of ``u`` and ``v`` may be SeededSigns (regenerated from a seed, not sent). A scale
    array has one value per row of U (per column of V), or a single value for all of them.
    """

    kind: ClassVar[str] = "lowrank"
    name: str
    shape: tuple[int, ...]
    u: Factor
    u_scale: WireArray
    v: Factor
    v_scale: WireArray

    @property
    def rank(self) -> int:
        return self.u.shape[1]

    def to_msgpack(self) -> dict:
        return {
            "kind": self.kind, "name": self.name, "shape": list(self.shape),
            "u": self.u.to_msgpack(), "u_scale": self.u_scale.to_msgpack(),
            "v": self.v.to_msgpack(), "v_scale": self.v_scale.to_msgpack(),
        }


@dataclass(frozen=True)
class DenseRecord:
    """Replaces (``set``) or adds to (``add``) a whole tensor; codes are multiplied by ``scale``."""

    kind: ClassVar[str] = "dense"
    name: str
    mode: str
    values: WireArray
    scale: WireArray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    def to_msgpack(self) -> dict:
        out = {"kind": self.kind, "name": self.name, "mode": self.mode, "values": self.values.to_msgpack()}
        if self.scale is not None:
            out["scale"] = self.scale.to_msgpack()
        return out


@dataclass(frozen=True)
class SparseRecord:
    """Sets or adds values at flat row-major positions; positions travel as gaps (first: the index)."""

    kind: ClassVar[str] = "sparse"
    name: str
    shape: tuple[int, ...]
    mode: str
    gaps: WireArray
    values: WireArray
    scale: WireArray | None = None

    def to_msgpack(self) -> dict:
        out = {
            "kind": self.kind, "name": self.name, "shape": list(self.shape), "mode": self.mode,
            "gaps": self.gaps.to_msgpack(), "values": self.values.to_msgpack(),
        }
        if self.scale is not None:
            out["scale"] = self.scale.to_msgpack()
        return out


@dataclass(frozen=True)
class FullRecord:
    """A whole model file: the device's model becomes exactly ``data``."""

    kind: ClassVar[str] = "full"
    name: str
    data: bytes

    def to_msgpack(self) -> dict:
        return {"kind": self.kind, "name": self.name, "data": self.data}


Record = LowRankRecord | DenseRecord | SparseRecord | FullRecord

_KEYS = {
    "lowrank": {"kind", "name", "shape", "u", "u_scale", "v", "v_scale"},
    "dense": {"kind", "name", "mode", "values"},
    "sparse": {"kind", "name", "shape", "mode", "gaps", "values"},
    "full": {"kind", "name", "data"},
}


def record_from_msgpack(obj: object, limits: Limits) -> Record:
    """Validate one decoded msgpack map and return its record; raises FormatError or LimitError."""
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str) or obj["kind"] not in _KEYS:
        kind = obj.get("kind") if isinstance(obj, dict) else type(obj).__name__
        raise FormatError(f"unknown record kind {kind!r}; this reader knows {', '.join(_KEYS)}")
    kind = obj["kind"]
    optional = {"scale"} if kind in ("dense", "sparse") else set()
    if not _KEYS[kind] <= set(obj) <= _KEYS[kind] | optional:
        raise FormatError(f"{kind} record must have exactly the keys {sorted(_KEYS[kind])} (+ {optional or 'none'})")
    name = read_name(obj["name"], limits)
    reader = {"lowrank": _read_lowrank, "dense": _read_dense, "sparse": _read_sparse, "full": _read_full}
    return reader[kind](obj, name, limits)


def read_name(value: object, limits: Limits) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limits.max_name_length:
        raise FormatError(f"record name must be a string of 1 to {limits.max_name_length} characters")
    if not value.isprintable():
        raise FormatError(f"record name {value!r} contains control characters")
    return value


def _read_mode(obj: dict, name: str) -> str:
    if obj["mode"] not in MODES:
        raise FormatError(f"{name}: mode must be 'add' or 'set', got {obj['mode']!r}")
    return obj["mode"]


def _read_lowrank(obj: dict, name: str, limits: Limits) -> LowRankRecord:
    shape = read_shape(obj["shape"], limits, name)
    if len(shape) < 2:
        raise FormatError(f"{name}: a lowrank record needs a tensor of at least 2 dimensions")
    out, rest = shape[0], math.prod(shape[1:])
    u = read_factor(obj["u"], limits, f"{name}.u", LOWRANK_CODES)
    v = read_factor(obj["v"], limits, f"{name}.v", LOWRANK_CODES)
    seeded = isinstance(u, SeededSigns) + isinstance(v, SeededSigns)
    if seeded == 2:
        raise FormatError(f"{name}: at most one of u and v may be seeded; the other carries the update")
    if not seeded and u.dtype != v.dtype:
        raise FormatError(f"{name}: u and v must use the same code dtype ({u.dtype} != {v.dtype})")
    if len(u.shape) != 2 or len(v.shape) != 2 or u.shape[1] != v.shape[0]:
        raise FormatError(f"{name}: u must be out × r and v r × rest, got {u.shape} and {v.shape}")
    if u.shape[1] > limits.max_rank:
        raise LimitError(f"{name}: rank {u.shape[1]} exceeds the limit of {limits.max_rank}")
    if u.shape[0] != out or v.shape[1] != rest:
        raise FormatError(f"{name}: factors {u.shape}·{v.shape} do not make a {out} × {rest} update")
    u_scale = read_array(obj["u_scale"], limits, f"{name}.u_scale", ("f32",))
    v_scale = read_array(obj["v_scale"], limits, f"{name}.v_scale", ("f32",))
    if u_scale.shape not in {(out,), (1,)} or v_scale.shape not in {(rest,), (1,)}:
        raise FormatError(f"{name}: scales must have shapes ({out},) or (1,), and ({rest},) or (1,)")
    return LowRankRecord(name, shape, u, u_scale, v, v_scale)


def _read_scale(obj: dict, name: str, values: WireArray, limits: Limits, per_row: bool) -> WireArray | None:
    is_code = values.dtype in CODE_DTYPES
    if is_code != ("scale" in obj):
        raise FormatError(f"{name}: a scale is required with integer codes and refused with f32 values")
    if not is_code:
        return None
    scale = read_array(obj["scale"], limits, f"{name}.scale", ("f32",))
    allowed = {(1,), (values.shape[0],)} if per_row else {(1,)}
    if scale.shape not in allowed:
        raise FormatError(f"{name}: scale shape {scale.shape} must be one of {sorted(allowed)}")
    return scale


def _read_dense(obj: dict, name: str, limits: Limits) -> DenseRecord:
    mode = _read_mode(obj, name)
    values = read_array(obj["values"], limits, f"{name}.values", ("f32",) + CODE_DTYPES)
    scale = _read_scale(obj, name, values, limits, per_row=True)
    return DenseRecord(name, mode, values, scale)


def _read_sparse(obj: dict, name: str, limits: Limits) -> SparseRecord:
    shape = read_shape(obj["shape"], limits, name)
    mode = _read_mode(obj, name)
    gaps = read_array(obj["gaps"], limits, f"{name}.gaps", ("u32",))
    values = read_array(obj["values"], limits, f"{name}.values", ("f32",) + CODE_DTYPES)
    if len(gaps.shape) != 1 or gaps.shape != values.shape:
        raise FormatError(f"{name}: gaps and values must be 1-D and of equal length")
    if gaps.size > math.prod(shape):
        raise FormatError(f"{name}: {gaps.size} positions in a tensor of {math.prod(shape)} elements")
    positions = sparse_positions(gaps)
    if (gaps.size > 1 and not (unpack(gaps)[1:] >= 1).all()) or positions[-1] >= math.prod(shape):
        raise FormatError(f"{name}: positions must be strictly increasing and inside the tensor")
    scale = _read_scale(obj, name, values, limits, per_row=False)
    return SparseRecord(name, shape, mode, gaps, values, scale)


def sparse_positions(gaps: WireArray) -> np.ndarray:
    """Flat row-major positions (int64) from a sparse record's gaps."""
    return np.cumsum(unpack(gaps), dtype=np.int64)


def _read_full(obj: dict, name: str, limits: Limits) -> FullRecord:
    if not isinstance(obj["data"], bytes) or not obj["data"]:
        raise FormatError(f"{name}: a full record's data must be non-empty bytes")
    return FullRecord(name, obj["data"])
