"""Payload format 2: records that refer to the model's tensors by position, stored in columns.

The document is the msgpack map, keys in this order::

    {"format": 2, "records": n, "seed": s, "heads": bin, "scale_dtype": "bf16" | "f32",
     "scales": bin, "data": bin}

A record states neither the name nor the shape of its tensor: it gives the tensor's position in the
model's layout, the order of the model file's tensors (an RCW header's, a .tflite binding's), which the
manifest's base_sha256 pins. ``heads`` holds every record's position gap, form and counts as LEB128
numbers; ``scales`` every scale, byte-shuffled; ``data`` every record's codes, back to back. A seeded
factor's seed is ``s`` plus the number of seeded records before it unless its head gives one, and its
scale is 1.0 unless the head says it is sent. docs/format.md section 3 is normative.

A reader translates each record into its format-1 map and validates that (codec.records), so both
formats accept exactly the same records.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgpack
import numpy as np

from codec.arrays import WireArray, byte_length, is_bfloat16, unpack
from codec.errors import FormatError, LimitError, ModelMismatchError
from codec.leb128 import encode_uvarint, read_uvarint
from codec.limits import Limits
from codec.msgpack_reads import read_bin_length, read_exactly, read_str, read_uint
from codec.records import DenseRecord, FullRecord, LowRankRecord, Record, SparseRecord, record_from_msgpack
from codec.seeded import GENERATOR, MAX_SEED, SeededSigns

COMPACT_FORMAT = 2
#: The document's keys after "format", in the order they are written and read.
KEYS = ("records", "seed", "heads", "scale_dtype", "scales", "data")
KINDS = ("lowrank", "dense", "sparse")
#: The dtype of a record's codes or values, by its number in bits 2-4 of the form.
DTYPES = ("f32", "b1", "trit", "i4", "i8", "i16")
#: Which lowrank factor is seeded, by its number in bits 5-6 of the form.
SEEDED_SIDES = (None, "u", "v")
SCALE_WIDTHS = {"bf16": 2, "f32": 4}
DTYPE_SHIFT, SIDE_SHIFT = 2, 5
MODE_SET = 1 << 5  # dense and sparse: "set" instead of "add"
DENSE_PER_ROW = 1 << 6  # dense: one scale per row
EXPLICIT_SEED = 1 << 7  # lowrank: the seed follows in the head
SEEDED_SCALE_SENT = 1 << 8  # lowrank: the seeded factor's scale is in the scales column (else 1.0)
U_PER_ROW, V_PER_ROW = 1 << 9, 1 << 10  # lowrank: one scale per row of U, per column of V
_FORM_BITS = {"lowrank": (1 << 11) - 1, "dense": (1 << 7) - 1, "sparse": (1 << 6) - 1}
#: The longest head: a gap, a form, a rank and a seed of ten bytes each.
MAX_HEAD_BYTES = 40
_ONE = np.ones(1, np.float32)


class Shaped(Protocol):
    """Anything with a tensor's shape: a codec.weights.TensorSlot, a torch tensor, a numpy array."""

    @property
    def shape(self) -> Sequence[int]: ...


#: A model's tensors in file order, name -> its shape (codec.model_files.read_model_slots gives one).
Layout = Mapping[str, Shaped]


@dataclass(frozen=True)
class TensorShape:
    """A layout entry kept apart from its model file (an .rcu keeps its deployed file's layout so)."""

    shape: tuple[int, ...]


def layout_shapes(layout: Layout) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(name, shape) of every tensor of ``layout``, in order."""
    return tuple((name, tuple(int(d) for d in shaped.shape)) for name, shaped in layout.items())


def layout_from_shapes(shapes: Sequence[tuple[str, Sequence[int]]]) -> dict[str, TensorShape]:
    """The layout of (name, shape) pairs, in their order."""
    return {name: TensorShape(tuple(shape)) for name, shape in shapes}


@dataclass(frozen=True)
class Head:
    """One record as the heads column gives it, with the byte counts its tensor's shape implies."""

    position: int
    kind: str
    dtype: str
    form: int
    rank: int = 0
    seed: int | None = None
    count: int = 0
    scale_count: int = 0
    data_bytes: int = 0

    @property
    def seeded(self) -> str | None:
        return SEEDED_SIDES[(self.form >> SIDE_SHIFT) & 3] if self.kind == "lowrank" else None


def encode_compact(records: Sequence[Record], layout: Layout) -> bytes:
    """The format-2 document of ``records`` (any order; written in layout order) for the model ``layout``.

    Raises ModelMismatchError for a record whose tensor the layout lacks or shapes differently, and
    FormatError for what format 2 cannot carry (a full record, two records for one tensor, mixed codes).
    """
    positions = {name: index for index, name in enumerate(layout)}
    placed = sorted((_position(record, positions, layout), index) for index, record in enumerate(records))
    if len({position for position, _ in placed}) != len(placed):
        raise FormatError("record names must be unique within a payload")
    ordered = [records[index] for _, index in placed]
    seeded_factors = [_seeded_factor(record) for record in ordered]
    base_seed = next((factor.seed for factor in seeded_factors if factor is not None), 0)
    heads, scales, data = bytearray(), [], []
    previous, seeded = -1, 0
    for (position, _), record, factor in zip(placed, ordered, seeded_factors, strict=True):
        form, numbers, record_scales, record_data = _columns(record, base_seed + seeded)
        heads += b"".join(encode_uvarint(number) for number in (position - previous - 1, form, *numbers))
        scales += record_scales
        data += record_data
        previous, seeded = position, seeded + (factor is not None)
    values = np.concatenate(scales) if scales else np.zeros(0, np.float32)
    scale_dtype = "bf16" if is_bfloat16(values) else "f32"
    document = {
        "format": COMPACT_FORMAT, "records": len(records), "seed": base_seed, "heads": bytes(heads),
        "scale_dtype": scale_dtype, "scales": shuffled_scales(values, scale_dtype), "data": b"".join(data),
    }
    return msgpack.packb(document, use_bin_type=True)


def _position(record: Record, positions: Mapping[str, int], layout: Layout) -> int:
    if isinstance(record, FullRecord):
        raise FormatError("a full record travels in payload format 1 (it needs no model to apply to)")
    position = positions.get(record.name)
    if position is None:
        raise ModelMismatchError(f"the update names tensor {record.name!r}, which the model does not have")
    if tuple(record.shape) != tuple(layout[record.name].shape):
        raise ModelMismatchError(f"{record.name}: update shape {record.shape} != model shape "
                                 f"{tuple(layout[record.name].shape)}")
    return position


def _seeded_factor(record: Record) -> SeededSigns | None:
    if not isinstance(record, LowRankRecord):
        return None
    seeded = [factor for factor in (record.u, record.v) if isinstance(factor, SeededSigns)]
    if len(seeded) == 2:
        raise FormatError(f"{record.name}: at most one of u and v may be seeded; the other carries the update")
    return seeded[0] if seeded else None


def _columns(record: Record, implicit_seed: int) -> tuple[int, list[int], list[np.ndarray], list[bytes]]:
    """A record's form, its head numbers after the form, its scales and its data pieces."""
    if isinstance(record, LowRankRecord):
        return _lowrank_columns(record, implicit_seed)
    scale = [] if record.scale is None else [unpack(record.scale)]
    form = KINDS.index(record.kind) | DTYPES.index(record.values.dtype) << DTYPE_SHIFT
    form |= MODE_SET if record.mode == "set" else 0
    if (record.values.dtype == "f32") != (record.scale is None):
        raise FormatError(f"{record.name}: a scale is required with integer codes and refused with f32 values")
    if isinstance(record, DenseRecord):
        form |= DENSE_PER_ROW if record.scale is not None and record.scale.size != 1 else 0
        return form, [], scale, [record.values.data]
    if isinstance(record, SparseRecord):
        return form, [record.gaps.size], scale, [record.gaps.data, record.values.data]
    raise FormatError(f"unknown record kind {record.kind!r}")


def _lowrank_columns(record: LowRankRecord, implicit_seed: int) -> tuple[int, list[int], list[np.ndarray], list[bytes]]:
    seeded = _seeded_factor(record)
    side = None if seeded is None else ("u" if seeded is record.u else "v")
    stored = [factor for factor in (record.u, record.v) if not isinstance(factor, SeededSigns)]
    if len({factor.dtype for factor in stored}) != 1 or stored[0].dtype not in DTYPES[1:]:
        raise FormatError(f"{record.name}: u and v must be codes of one dtype (b1, trit, i4, i8 or i16)")
    form = KINDS.index("lowrank") | DTYPES.index(stored[0].dtype) << DTYPE_SHIFT
    form |= SEEDED_SIDES.index(side) << SIDE_SHIFT
    numbers = [record.rank]
    if seeded is not None and seeded.seed != implicit_seed:
        form |= EXPLICIT_SEED
        numbers.append(seeded.seed)
    scales = []
    for name, scale, per_row in (("u", record.u_scale, U_PER_ROW), ("v", record.v_scale, V_PER_ROW)):
        values = unpack(scale)
        form |= per_row if values.size != 1 else 0
        if name == side and values.size == 1 and values.tobytes() == _ONE.tobytes():
            continue
        form |= SEEDED_SCALE_SENT if name == side else 0
        scales.append(values)
    return form, numbers, scales, [factor.data for factor in stored]


def shuffled_scales(values: np.ndarray, scale_dtype: str) -> bytes:
    """Scales as the column stores them: each value's bytes (little-endian bfloat16, the upper half of its
    float32, or float32), then the bytes regrouped by their place in the value (all first bytes, then
    all second bytes, ...), which puts the similar exponent bytes of neighbouring scales together."""
    words = np.ascontiguousarray(values, "<f4").view("<u4")
    if scale_dtype == "bf16":
        words = (words >> 16).astype("<u2")
    return words.view(np.uint8).reshape(values.size, SCALE_WIDTHS[scale_dtype]).T.tobytes()


def unshuffled_scales(data: bytes, scale_dtype: str) -> np.ndarray:
    """The float32 scales of a scales column (shuffled_scales undone)."""
    width = SCALE_WIDTHS[scale_dtype]
    planes = np.frombuffer(data, np.uint8).reshape(width, len(data) // width)
    words = np.ascontiguousarray(planes.T).view("<u2" if width == 2 else "<u4").reshape(-1)
    return (words.astype("<u4") << 16).view("<f4") if width == 2 else words.view("<f4")


def read_compact(unpacker: msgpack.Unpacker, layout: Layout, limits: Limits) -> Iterator[Record]:
    """Yield the records of a format-2 document whose "format" key and value were read from ``unpacker``.

    Every count and length is checked against the layout and ``limits`` before its bytes are read;
    one record's codes are read at a time.
    """
    count = _key_uint(unpacker, "records")
    if count > limits.max_records:
        raise LimitError(f"{count} records exceed the limit of {limits.max_records}")
    seed = _key_uint(unpacker, "seed")
    if seed > MAX_SEED:
        raise FormatError(f"the payload's seed {seed} is above 2^64-1")
    heads = read_heads(_key_bin(unpacker, "heads", limits, count * MAX_HEAD_BYTES), count, seed, layout, limits)
    _expect_key(unpacker, "scale_dtype")
    scale_dtype = read_str(unpacker, 8)
    if scale_dtype not in SCALE_WIDTHS:
        raise FormatError(f"scale_dtype {scale_dtype!r} is unknown; this reader knows bf16 and f32")
    scale_bytes = SCALE_WIDTHS[scale_dtype] * sum(head.scale_count for head in heads)
    scales = unshuffled_scales(_key_bin(unpacker, "scales", limits, scale_bytes, exact=True), scale_dtype)
    _key_bin_length(unpacker, "data", sum(head.data_bytes for head in heads))
    names = list(layout)
    used = 0
    for head in heads:
        data = read_exactly(unpacker, head.data_bytes)
        record_scales = scales[used : used + head.scale_count]
        used += head.scale_count
        name = names[head.position]
        yield record_from_msgpack(_record_map(head, name, tuple(layout[name].shape), record_scales, data), limits)


def read_heads(data: bytes, count: int, seed: int, layout: Layout, limits: Limits) -> list[Head]:
    """The heads column, each record checked against its tensor in ``layout`` and sized."""
    heads, offset, previous, seeded = [], 0, -1, 0
    names, shapes = list(layout), [tuple(shaped.shape) for shaped in layout.values()]
    for number in range(count):
        gap, offset = read_uvarint(data, offset, f"record {number}")
        position = previous + 1 + gap
        if position >= len(shapes):
            raise ModelMismatchError(f"record {number} refers to tensor {position}, but the model has "
                                     f"{len(shapes)}: is the payload for another model file?")
        what = f"record {number} (tensor {position}, {names[position]})"
        form, offset = read_uvarint(data, offset, what)
        kind_number = form & 3
        if kind_number >= len(KINDS) or (form >> DTYPE_SHIFT & 7) >= len(DTYPES):
            raise FormatError(f"{what}: form {form:#x} names no known record kind or dtype")
        kind, dtype = KINDS[kind_number], DTYPES[form >> DTYPE_SHIFT & 7]
        if form & ~_FORM_BITS[kind]:
            raise FormatError(f"{what}: form {form:#x} sets bits a {kind} record does not have")
        sizer = {"lowrank": _lowrank_head, "dense": _dense_head, "sparse": _sparse_head}[kind]
        head, offset = sizer(data, offset, Head(position, kind, dtype, form), shapes[position], seed + seeded, limits,
                             what)
        if head.data_bytes > limits.max_record_bytes:
            raise LimitError(f"{what}: {head.data_bytes} bytes exceed the record limit of {limits.max_record_bytes}")
        heads.append(head)
        previous, seeded = position, seeded + (head.seeded is not None)
    if offset != len(data):
        raise FormatError("the payload's heads column has bytes after its last record")
    return heads


def _lowrank_head(data: bytes, offset: int, head: Head, shape: tuple[int, ...], implicit_seed: int,
                  limits: Limits, what: str) -> tuple[Head, int]:
    side = head.seeded if (head.form >> SIDE_SHIFT & 3) < len(SEEDED_SIDES) else "?"
    if side == "?" or head.dtype == "f32":
        raise FormatError(f"{what}: a lowrank form needs code dtypes and at most one seeded factor")
    if side is None and head.form & (EXPLICIT_SEED | SEEDED_SCALE_SENT):
        raise FormatError(f"{what}: a lowrank record without a seeded factor has no seed to give")
    if len(shape) < 2:
        raise ModelMismatchError(f"{what}: a lowrank record needs a tensor of at least 2 dimensions, this one has "
                                 f"shape {shape}: is the payload for another model file?")
    rank, offset = read_uvarint(data, offset, what)
    if not 1 <= rank <= limits.max_rank:
        raise LimitError(f"{what}: rank {rank} is outside 1..{limits.max_rank}")
    seed = None
    if side is not None:
        seed = implicit_seed
        if head.form & EXPLICIT_SEED:
            seed, offset = read_uvarint(data, offset, what)
        if seed > MAX_SEED:
            raise FormatError(f"{what}: seed {seed} is above 2^64-1")
    out, rest = shape[0], math.prod(shape[1:])
    if max(out, rest) * rank > limits.max_tensor_elements:
        raise LimitError(f"{what}: factors of rank {rank} exceed the limit of {limits.max_tensor_elements} elements")
    stored = [size for factor, size in (("u", out * rank), ("v", rank * rest)) if factor != side]
    scale_count = sum(
        (rows if head.form & flag else 1)
        for factor, rows, flag in (("u", out, U_PER_ROW), ("v", rest, V_PER_ROW))
        if factor != side or head.form & SEEDED_SCALE_SENT
    )
    data_bytes = sum(byte_length(head.dtype, size) for size in stored)
    return Head(head.position, head.kind, head.dtype, head.form, rank, seed, 0, scale_count, data_bytes), offset


def _dense_head(data: bytes, offset: int, head: Head, shape: tuple[int, ...], _seed: int,
                limits: Limits, what: str) -> tuple[Head, int]:
    codes = head.dtype != "f32"
    if not codes and head.form & DENSE_PER_ROW:
        raise FormatError(f"{what}: f32 values take no scale")
    scale_count = 0 if not codes else shape[0] if head.form & DENSE_PER_ROW else 1
    data_bytes = byte_length(head.dtype, math.prod(shape))
    return Head(head.position, head.kind, head.dtype, head.form, 0, None, 0, scale_count, data_bytes), offset


def _sparse_head(data: bytes, offset: int, head: Head, shape: tuple[int, ...], _seed: int,
                 limits: Limits, what: str) -> tuple[Head, int]:
    count, offset = read_uvarint(data, offset, what)
    if not 1 <= count <= math.prod(shape):
        raise FormatError(f"{what}: {count} positions in a tensor of {math.prod(shape)} elements")
    data_bytes = 4 * count + byte_length(head.dtype, count)
    scale_count = 0 if head.dtype == "f32" else 1
    return Head(head.position, head.kind, head.dtype, head.form, 0, None, count, scale_count, data_bytes), offset


def _record_map(head: Head, name: str, shape: tuple[int, ...], scales: np.ndarray, data: bytes) -> dict:
    """The format-1 map of one record (which codec.records then validates)."""
    if head.kind == "dense":
        out = {"kind": "dense", "name": name, "mode": _mode(head), "values": _array(head.dtype, shape, data)}
        if head.scale_count:
            out["scale"] = _array("f32", (scales.size,), scales.tobytes())
        return out
    if head.kind == "sparse":
        gaps = data[: 4 * head.count]
        values = _array(head.dtype, (head.count,), data[len(gaps):])
        out = {"kind": "sparse", "name": name, "shape": list(shape), "mode": _mode(head),
               "gaps": _array("u32", (head.count,), gaps), "values": values}
        if head.scale_count:
            out["scale"] = _array("f32", (1,), scales.tobytes())
        return out
    out, rest = shape[0], math.prod(shape[1:])
    factors, scale_maps, used = {}, {}, 0
    pieces = iter([data[: byte_length(head.dtype, out * head.rank)], data[byte_length(head.dtype, out * head.rank):]]
                  if head.seeded is None else [data])
    for side, factor_shape, rows, flag in (("u", (out, head.rank), out, U_PER_ROW),
                                           ("v", (head.rank, rest), rest, V_PER_ROW)):
        if side == head.seeded:
            factors[side] = {"dtype": "b1", "shape": list(factor_shape), "seed": head.seed, "gen": GENERATOR}
        else:
            factors[side] = _array(head.dtype, factor_shape, next(pieces))
        if side == head.seeded and not head.form & SEEDED_SCALE_SENT:
            scale_maps[side] = _array("f32", (1,), _ONE.tobytes())
            continue
        size = rows if head.form & flag else 1
        scale_maps[side] = _array("f32", (size,), scales[used : used + size].tobytes())
        used += size
    return {"kind": "lowrank", "name": name, "shape": list(shape), "u": factors["u"], "u_scale": scale_maps["u"],
            "v": factors["v"], "v_scale": scale_maps["v"]}


def _mode(head: Head) -> str:
    return "set" if head.form & MODE_SET else "add"


def _array(dtype: str, shape: tuple[int, ...], data: bytes) -> dict:
    return WireArray(dtype, tuple(shape), bytes(data)).to_msgpack()


def _expect_key(unpacker: msgpack.Unpacker, key: str) -> None:
    if read_str(unpacker, 16) != key:
        raise FormatError(f"a format-2 document's keys are {', '.join(('format',) + KEYS)}, in that order; "
                          f"expected {key!r}")


def _key_uint(unpacker: msgpack.Unpacker, key: str) -> int:
    _expect_key(unpacker, key)
    return read_uint(unpacker, key)


def _key_bin_length(unpacker: msgpack.Unpacker, key: str, expected: int) -> None:
    """A column's key and bin header, its length checked; its bytes are left to read."""
    _expect_key(unpacker, key)
    length = read_bin_length(unpacker, key)
    if length != expected:
        raise FormatError(f"the payload's {key} column is {length} bytes; its records need {expected}")


def _key_bin(unpacker: msgpack.Unpacker, key: str, limits: Limits, bound: int, exact: bool = False) -> bytes:
    """A column read whole: exactly ``bound`` bytes, or at most that many."""
    _expect_key(unpacker, key)
    length = read_bin_length(unpacker, key)
    if (length != bound) if exact else (length > bound):
        raise FormatError(f"the payload's {key} column is {length} bytes; its records need "
                          f"{'' if exact else 'at most '}{bound}")
    if length > limits.max_record_bytes:
        raise LimitError(f"the payload's {key} column of {length} bytes exceeds {limits.max_record_bytes}")
    return read_exactly(unpacker, length)
