"""Exact, in-place application of update records to a model file.

The integer product of the codes is computed exactly (float32 while every partial sum stays below
2^24, float64 otherwise; a seeded sign factor is a factor of ±1 codes like any other), then
``(su ⊙ P) ⊙ sv`` and ``W + ΔW`` are elementwise float32 operations in that fixed order. Elementwise
IEEE arithmetic is correctly rounded, so the bytes of the result are the same on every machine and
thread count, and the manifest can pin the sha256 of the updated file. Records are applied with the
calling thread in IEEE default arithmetic (codec.fpenv), whatever a library loaded into the process set.
"""

from __future__ import annotations

import hashlib
import itertools
import mmap
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from codec.arrays import CODE_MAX, WireArray, unpack
from codec.errors import FormatError, ModelMismatchError, NonFiniteError
from codec.fpenv import ieee_arithmetic
from codec.limits import DEFAULT_LIMITS, Limits
from codec.model_files import read_model_slots
from codec.payload import iter_records
from codec.records import DenseRecord, FullRecord, LowRankRecord, Record, SparseRecord, sparse_positions
from codec.seeded import factor_codes
from codec.weights import SlotReader, TensorSlot

_FLOAT32_EXACT = 2**24


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


def lowrank_delta(record: LowRankRecord) -> np.ndarray:
    """ΔW = (su ⊙ (Qu·Qv)) ⊙ sv as a float32 out × rest array."""
    u, v = record.u, record.v
    delta = exact_product(factor_codes(u), factor_codes(v), CODE_MAX[u.dtype], CODE_MAX[v.dtype])
    np.multiply(delta, unpack(record.u_scale)[:, None], out=delta)
    np.multiply(delta, unpack(record.v_scale)[None, :], out=delta)
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


def apply_record(buffer: memoryview, slots: Mapping[str, TensorSlot], record: Record) -> None:
    """Apply one record to the tensor it names, writing only if the result is finite.

    The arithmetic runs on the tensor's logical shape (the record's); the result is written back
    through the slot's permutation when the file stores another axis order (TFLite kernels).
    """
    if isinstance(record, FullRecord):
        raise FormatError("a full record replaces the whole file and cannot be applied to a tensor")
    slot = slots.get(record.name)
    if slot is None:
        raise ModelMismatchError(f"the update names tensor {record.name!r}, which the model does not have")
    if record.shape != slot.shape:
        raise ModelMismatchError(f"{record.name}: update shape {record.shape} != model shape {slot.shape}")
    target = slot.view(buffer)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught by the finiteness check below
        result = _updated(target, record)
    if not np.isfinite(result).all():
        raise NonFiniteError(f"{record.name}: the updated weights would contain NaN or Inf")
    target[...] = result.reshape(target.shape)  # through the slot's permutation, if it has one


def _updated(target: np.ndarray, record: LowRankRecord | DenseRecord | SparseRecord) -> np.ndarray:
    """The tensor's new values in its logical shape (a new array; ``target`` is not modified)."""
    if isinstance(record, LowRankRecord):
        result = lowrank_delta(record)
        np.add(target.reshape(result.shape), result, out=result)
        return result
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
    payload: bytes,
    decompressed_length: int,
    limits: Limits = DEFAULT_LIMITS,
    slot_reader: SlotReader = read_model_slots,
) -> bytes:
    """Apply a payload to the model file at ``path`` in place; returns the file's new sha256.

    The default slot reader follows the file's content (codec.model_files): RCW or a .tflite with an
    embedded binding. Pass ``codec.tflite.binding_slot_reader(binding)`` for a .tflite bound by content.

    The caller passes a copy of the running model: on any error the file is left half-written.
    Extra memory is about the largest tensor (one record and one result at a time).
    """
    first, records = _records(payload, decompressed_length, limits)
    if isinstance(first, FullRecord):
        Path(path).write_bytes(first.data)
        return file_sha256(path)
    if Path(path).stat().st_size == 0:
        raise FormatError(f"the model file {path} is empty; restore it from the kept previous file")
    with open(path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as mapped:
        buffer = memoryview(mapped)
        try:
            _patch(buffer, itertools.chain([first], records), limits, slot_reader)
            mapped.flush()
        except BaseException as exc:
            traceback.clear_frames(exc.__traceback__)  # drop the arrays viewing the map, so it can close
            raise
        finally:
            buffer.release()
    return file_sha256(path)


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
    first, records = _records(payload, decompressed_length, limits)
    if isinstance(first, FullRecord):
        data = first.data
    elif not model_file:
        raise FormatError("the model file is empty: a delta payload needs the file it applies to")
    else:
        buffer = bytearray(model_file)
        _patch(memoryview(buffer), itertools.chain([first], records), limits, slot_reader)
        data = bytes(buffer)
    return data, hashlib.sha256(data).digest()


def _records(payload: bytes, decompressed_length: int, limits: Limits) -> tuple[Record, Iterator[Record]]:
    """The payload's first record and an iterator over the rest (a full record is checked to stand alone)."""
    records = iter_records(payload, decompressed_length, limits)
    first = next(records, None)
    if first is None:
        raise FormatError("the payload holds no records")
    if isinstance(first, FullRecord):
        next(records, None)  # the end-of-document checks (trailing data, declared length)
    return first, records


def _patch(buffer: memoryview, records: Iterator[Record], limits: Limits, slot_reader: SlotReader) -> None:
    """Apply ``records`` in order to the model file held in ``buffer``, in IEEE arithmetic (codec.fpenv)."""
    slots = slot_reader(buffer, limits)
    with ieee_arithmetic():
        for record in records:
            apply_record(buffer, slots, record)


def file_sha256(path: Path) -> bytes:
    """sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.digest()
