"""Exact, in-place application of update records to a model file.

The integer product of the codes is computed exactly (float32 while every partial sum stays below
2^24, float64 otherwise; a seeded sign factor is a factor of ±1 codes like any other), then
``(su ⊙ P) ⊙ sv`` and ``W + ΔW`` are elementwise float32 operations in that fixed order. Elementwise
IEEE arithmetic is correctly rounded, so the bytes of the result are the same on every machine and
thread count, and the manifest can pin the sha256 of the updated file. Records are applied with the
calling thread in IEEE default arithmetic (codec.fpenv), whatever a library loaded into the process set.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import math
import mmap
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from codec.arrays import CODE_MAX, WireArray, unpack
from codec.compact import Layout
from codec.errors import FormatError, ModelMismatchError, NonFiniteError
from codec.fpenv import ieee_arithmetic
from codec.full_payload import starts_with_full_record, write_full_record
from codec.limits import DEFAULT_LIMITS, MIB, Limits
from codec.model_files import read_model_slots
from codec.payload import Payload, PayloadSource, iter_records
from codec.records import DenseRecord, FullRecord, LowRankRecord, Record, SparseRecord, sparse_positions
from codec.seeded import factor_codes
from codec.weights import SlotReader, TensorSlot

_FLOAT32_EXACT = 2**24
#: Rows of a low-rank update computed at a time: about this many bytes of ΔW.
BLOCK_BYTES = 4 * MIB


def exact_product(u_codes: np.ndarray, v_codes: np.ndarray, u_max: int, v_max: int) -> np.ndarray:
    """U·V of integer codes of magnitude at most ``u_max`` and ``v_max`` as float32, computed exactly.

    Every partial sum is an integer of magnitude at most u_max·v_max·rank: below 2^24 float32 holds
    them all exactly; otherwise float64 does and P is rounded once. Both give the same float32 P.
    """
    rank = u_codes.shape[1]
    if u_max * v_max * rank < _FLOAT32_EXACT:
        return np.matmul(u_codes.astype(np.float32), v_codes.astype(np.float32))
    product = np.matmul(u_codes.astype(np.float64), v_codes.astype(np.float64))
    return product.astype(np.float32)


def lowrank_delta(record: LowRankRecord, rows: slice = slice(None)) -> np.ndarray:
    """ΔW = (su ⊙ (Qu·Qv)) ⊙ sv as a float32 array: its ``rows`` of the out × rest view (default all)."""
    return _LowRankTerms(record).delta(rows)


class _LowRankTerms:
    """A low-rank record's integer codes and scales, expanded once and shared by every block of rows."""

    def __init__(self, record: LowRankRecord) -> None:
        self.u_codes, self.v_codes = factor_codes(record.u), factor_codes(record.v)
        self.u_max, self.v_max = CODE_MAX[record.u.dtype], CODE_MAX[record.v.dtype]
        self.u_scale, self.v_scale = unpack(record.u_scale), unpack(record.v_scale)

    def delta(self, rows: slice) -> np.ndarray:
        """The ``rows`` of ΔW (float32, exact products, scales applied in the format's order)."""
        delta = exact_product(self.u_codes[rows], self.v_codes, self.u_max, self.v_max)
        np.multiply(delta, (self.u_scale if self.u_scale.size == 1 else self.u_scale[rows])[:, None], out=delta)
        np.multiply(delta, self.v_scale[None, :], out=delta)
        return delta


def dequantise(values: WireArray, scale: WireArray | None) -> np.ndarray:
    """Float32 values: as sent, or codes times a per-tensor or per-row scale."""
    decoded = unpack(values)
    if scale is None:
        return decoded
    factors = unpack(scale)
    rows = decoded.astype(np.float32).reshape(decoded.shape[0] if factors.size > 1 else 1, -1)
    np.multiply(rows, factors[:, None], out=rows)
    return rows.reshape(decoded.shape)


def apply_record(buffer: memoryview | bytearray, slots: Mapping[str, TensorSlot], record: Record) -> None:
    """Apply one record to the tensor it names, in ``buffer`` (the model file, or the tensor's own bytes).

    The arithmetic runs on the tensor's logical shape (the record's); results are written back through
    the slot's permutation when the file stores another axis order (TFLite kernels). A low-rank record
    is applied BLOCK_BYTES of rows at a time, so the extra memory stays about that much plus the factors'
    codes (expanded once per record); any block that is not finite raises NonFiniteError before it is
    written (earlier blocks may be: callers apply to a copy and drop it on an error).
    """
    if isinstance(record, FullRecord):
        raise FormatError("a full record replaces the whole file and cannot be applied to a tensor")
    target = slot_for(slots, record).view(buffer)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught by the finiteness checks
        if isinstance(record, LowRankRecord):
            _add_lowrank(target, record)
            return
        result = _updated(target, record)
    _check_finite(result, record)
    target[...] = result.reshape(target.shape)  # through the slot's permutation, if it has one


def slot_for(slots: Mapping[str, TensorSlot], record: Record) -> TensorSlot:
    """The slot of the tensor ``record`` names, checked to have the record's shape."""
    slot = slots.get(record.name)
    if slot is None:
        raise ModelMismatchError(f"the update names tensor {record.name!r}, which the model does not have")
    if record.shape != slot.shape:
        raise ModelMismatchError(f"{record.name}: update shape {record.shape} != model shape {slot.shape}")
    return slot


def _add_lowrank(target: np.ndarray, record: LowRankRecord) -> None:
    """``target`` (the tensor in its logical shape) becomes W + ΔW, BLOCK_BYTES of rows at a time."""
    out, rest = record.shape[0], math.prod(record.shape[1:])
    step = max(1, BLOCK_BYTES // (4 * rest))
    terms = _LowRankTerms(record)
    for start in range(0, out, step):
        rows = slice(start, min(out, start + step))
        result = terms.delta(rows)
        block = target[rows]
        np.add(block.reshape(result.shape), result, out=result)
        _check_finite(result, record)
        block[...] = result.reshape(block.shape)


def _check_finite(result: np.ndarray, record: Record) -> None:
    if not np.isfinite(result).all():
        raise NonFiniteError(f"{record.name}: the updated weights would contain NaN or Inf")


def _updated(target: np.ndarray, record: DenseRecord | SparseRecord) -> np.ndarray:
    """The tensor's new values in its logical shape (a new array; ``target`` is not modified)."""
    if isinstance(record, DenseRecord):
        return _combine(target, dequantise(record.values, record.scale), record.mode)
    result = target.reshape(-1).copy()
    positions = sparse_positions(record.gaps)
    values = dequantise(record.values, record.scale)
    result[positions] = result[positions] + values if record.mode == "add" else values
    return result


def _combine(target: np.ndarray, values: np.ndarray, mode: str) -> np.ndarray:
    return np.add(target, values) if mode == "add" else values.astype(np.float32, copy=True)


def apply_payload(
    path: Path,
    payload: Payload,
    decompressed_length: int,
    limits: Limits = DEFAULT_LIMITS,
    slot_reader: SlotReader = read_model_slots,
    *,
    full: bool | None = None,
) -> bytes:
    """Apply a payload to the model file at ``path`` in place; returns the file's new sha256.

    ``full`` says whether the payload is a whole model file (the manifest's payload_kind); None looks at
    the payload (bytes only). A full payload is streamed into the file; a delta is applied tensor by
    tensor, each read from the file, updated and written back. Extra memory stays about the largest
    tensor plus a few MiB, and a full release's model file is never in memory. The default slot reader
    follows the file's content (codec.model_files): RCW or a .tflite with an embedded binding; pass
    ``codec.tflite.binding_slot_reader(binding)`` for a .tflite bound by content.

    The caller passes a copy of the running model: on any error the file is left half-written.
    """
    if full is None:
        if isinstance(payload, PayloadSource):
            raise TypeError("say whether a streamed payload is full (the manifest's payload_kind)")
        full = starts_with_full_record(payload, decompressed_length, limits)
    if full:
        _write_full(Path(path), payload, decompressed_length, limits)
        return file_sha256(path)
    if Path(path).stat().st_size == 0:
        raise FormatError(f"the model file {path} is empty; restore it from the kept previous file")
    slots = _read_slots(path, limits, slot_reader)
    first, records = _records(payload, decompressed_length, limits, slots)
    if isinstance(first, FullRecord):
        raise FormatError("the payload holds a whole model file where a delta was declared")
    with open(path, "r+b") as handle, ieee_arithmetic():
        for record in itertools.chain([first], records):
            _apply_in_file(handle.fileno(), slots, record)
    return file_sha256(path)


def _write_full(path: Path, payload: Payload, decompressed_length: int, limits: Limits) -> None:
    """Stream a full payload's model file beside ``path`` and move it there only once it checked out."""
    part = path.with_name(f"{path.name}.part")
    try:
        with open(part, "wb") as handle:
            write_full_record(payload, decompressed_length, limits, handle)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def _read_slots(path: Path, limits: Limits, slot_reader: SlotReader) -> dict[str, TensorSlot]:
    """The file's tensors, read through a read-only map (only the pages the reader looks at are loaded)."""
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            return dict(slot_reader(view, limits))
        except BaseException as exc:
            # Its traceback's frames hold views of the map (and clearing them is not enough: a frame keeps its
            # function, and a comprehension's closure keeps the table it reads), so the map could not close.
            exc.__traceback__ = None
            raise
        finally:
            view.release()


def _apply_in_file(descriptor: int, slots: Mapping[str, TensorSlot], record: Record) -> None:
    """Read the tensor ``record`` names, apply it, write the tensor back."""
    if isinstance(record, FullRecord):
        raise FormatError("a full record replaces the whole file and cannot be applied to a tensor")
    slot = slot_for(slots, record)
    tensor = bytearray(slot.nbytes)  # read into it: no second copy of the tensor
    if os.preadv(descriptor, [tensor], slot.offset) != slot.nbytes:
        raise FormatError(f"{record.name}: the model file ends inside the tensor")
    apply_record(tensor, {record.name: replace(slot, offset=0)}, record)
    _write_at(descriptor, memoryview(tensor), slot.offset)


def _write_at(descriptor: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``: pwrite may write less (a full disk, a signal)."""
    while data:
        written = os.pwrite(descriptor, data, offset)
        if written == 0:
            raise OSError(errno.ENOSPC, "no space left to write the updated tensor")
        data, offset = data[written:], offset + written


def apply_to_bytes(
    model_file: bytes,
    payload: bytes,
    decompressed_length: int,
    limits: Limits = DEFAULT_LIMITS,
    slot_reader: SlotReader = read_model_slots,
) -> tuple[bytes, bytes]:
    """The model file a device has after applying the payload to ``model_file``, and its sha256.

    The same arithmetic as ``apply_payload``, on a copy in memory: ``model_file`` is not changed, and
    nothing is written to disk. For publishers and tools that need the exact bytes a device will run.
    """
    if starts_with_full_record(payload, decompressed_length, limits):
        first, _ = _records(payload, decompressed_length, limits)
        data = first.data
    elif not model_file:
        raise FormatError("the model file is empty: a delta payload needs the file it applies to")
    else:
        buffer = bytearray(model_file)
        _patch(memoryview(buffer), payload, decompressed_length, limits, slot_reader)
        data = bytes(buffer)
    return data, hashlib.sha256(data).digest()


def _records(
    payload: Payload, decompressed_length: int, limits: Limits, layout: Layout | None = None
) -> tuple[Record, Iterator[Record]]:
    """The payload's first record and an iterator over the rest (a full record is checked to stand alone)."""
    records = iter_records(payload, decompressed_length, limits, layout)
    first = next(records, None)
    if first is None:
        raise FormatError("the payload holds no records")
    if isinstance(first, FullRecord):
        next(records, None)  # the end-of-document checks (trailing data, declared length)
    return first, records


def _patch(buffer: memoryview, payload: bytes, decompressed_length: int, limits: Limits,
           slot_reader: SlotReader) -> None:
    """Apply a delta payload's records in order to the model file held in ``buffer``, in IEEE arithmetic
    (codec.fpenv)."""
    slots = slot_reader(buffer, limits)
    first, records = _records(payload, decompressed_length, limits, slots)
    if isinstance(first, FullRecord):
        raise FormatError("a full record replaces the whole file and cannot be applied to a tensor")
    with ieee_arithmetic():
        for record in itertools.chain([first], records):
            apply_record(buffer, slots, record)


def file_sha256(path: Path) -> bytes:
    """sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.digest()
