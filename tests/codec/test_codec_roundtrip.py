"""Round-trip properties: whatever the encoders produce, the strict decoders give back unchanged.

Covers arrays of every dtype (odd sizes for the packed ones), each record kind and variant, whole
payloads, signed manifests, and chunking with reassembly in any order with duplicates.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from codec import (
    DEFAULT_LIMITS,
    DenseRecord,
    FullRecord,
    IntegrityError,
    LowRankRecord,
    Reassembler,
    Record,
    Release,
    SparseRecord,
    VerifyKey,
    encode_payload,
    iter_records,
    read_manifest,
    split_payload,
)
from codec.arrays import ALL_DTYPES, CODE_MAX, WireArray, byte_length, pack, read_array, unpack
from codec.quantise import quantise
from codec.records import record_from_msgpack

#: No example database (failures print their example instead of saving it under the working directory),
#: no deadline (the machine is shared), and a bounded number of examples to keep the folder fast.
PROPERTY = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

_NUMPY_OF = {
    "f32": np.float32, "trit": np.int8, "i4": np.int8, "i8": np.int8, "i16": np.int16, "b1": np.int8, "u32": np.uint32
}

shapes = st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple)
names = st.text(st.characters(categories=["L", "N", "P", "S"], include_characters=" "), min_size=1, max_size=24)


def elements(dtype: str) -> st.SearchStrategy:
    """Values a WireArray of ``dtype`` may carry (symmetric code ranges, finite floats)."""
    if dtype == "f32":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if dtype == "b1":
        return st.sampled_from([-1, 1])
    if dtype == "u32":
        return st.integers(0, 2**32 - 1)
    return st.integers(-CODE_MAX[dtype], CODE_MAX[dtype])


@st.composite
def values_of(draw: st.DrawFn, dtype: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A numpy array with values valid for ``dtype``."""
    shape = draw(shapes) if shape is None else shape
    return draw(arrays(_NUMPY_OF[dtype], shape, elements=elements(dtype)))


def wire(array: WireArray, allowed: tuple[str, ...] = ALL_DTYPES) -> WireArray:
    """``array`` after a trip through msgpack bytes and the strict array reader."""
    return read_array(msgpack.unpackb(msgpack.packb(array.to_msgpack())), DEFAULT_LIMITS, "x", allowed)


def through_msgpack(record: Record) -> Record:
    """``record`` after a trip through msgpack bytes and the strict record reader."""
    return record_from_msgpack(msgpack.unpackb(msgpack.packb(record.to_msgpack())), DEFAULT_LIMITS)


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype and bit pattern (so -0.0 and 0.0 differ)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------------------------- arrays


@PROPERTY
@given(st.sampled_from(ALL_DTYPES).flatmap(lambda d: st.tuples(st.just(d), values_of(d))))
def test_array_roundtrip_gives_back_the_same_values_for_every_dtype(case: tuple[str, np.ndarray]) -> None:
    dtype, values = case
    packed = pack(values, dtype)
    assert len(packed.data) == byte_length(dtype, values.size)
    decoded = unpack(wire(packed))
    assert same_values(decoded, values.astype(_NUMPY_OF[dtype]))


@PROPERTY
@given(st.sampled_from(["i4", "trit", "b1"]), st.integers(0, 40).map(lambda n: 2 * n + 1))
def test_packed_dtypes_roundtrip_odd_element_counts(dtype: str, count: int) -> None:
    rng = np.random.default_rng(count)
    high = CODE_MAX[dtype]
    values = rng.integers(-high, high + 1, size=count).astype(np.int8)
    if dtype == "b1":
        values = np.where(values >= 0, 1, -1).astype(np.int8)
    assert same_values(unpack(wire(pack(values, dtype))), values)


# --------------------------------------------------------------------------------------------- records


@st.composite
def lowrank_records(draw: st.DrawFn) -> LowRankRecord:
    dtype = draw(st.sampled_from(["b1", "trit", "i4", "i8", "i16"]))
    shape = (draw(st.integers(1, 6)),) + draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
    out, rest, rank = shape[0], math.prod(shape[1:]), draw(st.integers(1, 5))
    return LowRankRecord(
        draw(names), shape,
        pack(draw(values_of(dtype, (out, rank))), dtype), pack(draw(values_of("f32", (out,))), "f32"),
        pack(draw(values_of(dtype, (rank, rest))), dtype), pack(draw(values_of("f32", (rest,))), "f32"),
    )


@st.composite
def dense_records(draw: st.DrawFn) -> DenseRecord:
    dtype = draw(st.sampled_from(["f32", "trit", "i4", "i8", "i16", "b1"]))
    values = draw(values_of(dtype))
    scale = None
    if dtype != "f32":
        rows = draw(st.sampled_from([1, values.shape[0]]))
        scale = pack(draw(values_of("f32", (rows,))), "f32")
    return DenseRecord(draw(names), draw(st.sampled_from(["add", "set"])), pack(values, dtype), scale)


@st.composite
def sparse_records(draw: st.DrawFn) -> SparseRecord:
    shape = draw(shapes)
    positions = sorted(draw(st.sets(st.integers(0, math.prod(shape) - 1), min_size=1)))
    gaps = np.diff(np.array(positions, np.int64), prepend=0).astype(np.uint32)
    dtype = draw(st.sampled_from(["f32", "trit", "i4", "i8", "i16", "b1"]))
    values = draw(values_of(dtype, (len(positions),)))
    scale = None if dtype == "f32" else pack(draw(values_of("f32", (1,))), "f32")
    mode = draw(st.sampled_from(["add", "set"]))
    return SparseRecord(draw(names), shape, mode, pack(gaps, "u32"), pack(values, dtype), scale)


full_records = st.builds(FullRecord, names, st.binary(min_size=1, max_size=300))
any_record = st.one_of(lowrank_records(), dense_records(), sparse_records())


@PROPERTY
@given(lowrank_records())
def test_lowrank_record_roundtrips_through_msgpack(record: LowRankRecord) -> None:
    assert through_msgpack(record) == record


@PROPERTY
@given(dense_records())
def test_dense_record_roundtrips_with_f32_or_codes_and_per_tensor_or_per_row_scale(record: DenseRecord) -> None:
    assert through_msgpack(record) == record


@PROPERTY
@given(sparse_records())
def test_sparse_record_roundtrips_with_its_positions(record: SparseRecord) -> None:
    decoded = through_msgpack(record)
    assert decoded == record


@PROPERTY
@given(full_records)
def test_full_record_roundtrips_its_bytes(record: FullRecord) -> None:
    assert through_msgpack(record) == record


@PROPERTY
@given(st.sampled_from(["i4", "i8", "i16"]), values_of("f32"), st.sampled_from([None, 0]))
def test_quantised_codes_are_in_range_and_within_half_a_step(dtype: str, values: np.ndarray, axis: int | None) -> None:
    values = np.clip(values, -1e30, 1e30)  # keep scales normal floats: far from overflow ...
    values[np.abs(values) < 1e-20] = 0  # ... and from subnormals, whose precision is lower
    codes, scale = quantise(values, dtype, axis)
    assert np.abs(codes.astype(np.int32)).max() <= CODE_MAX[dtype]
    steps = scale.reshape((-1,) + (1,) * (values.ndim - 1)) if axis == 0 else scale
    exact = values.astype(np.float64)
    error = np.abs(exact - codes * steps.astype(np.float64))
    rounding = 4 * np.finfo(np.float32).eps * np.abs(exact)  # values / scale is computed in float32
    assert (error <= steps.astype(np.float64) * 0.5 + rounding + 1e-30).all()


# -------------------------------------------------------------------------------------------- payloads


@PROPERTY
@given(st.lists(any_record, min_size=1, max_size=5, unique_by=lambda r: r.name))
def test_payload_roundtrip_yields_equal_records_in_order(records: list[Record]) -> None:
    payload, length = encode_payload(records, level=1)
    assert list(iter_records(payload, length)) == records


@PROPERTY
@given(full_records)
def test_payload_with_one_full_record_roundtrips(record: FullRecord) -> None:
    payload, length = encode_payload([record], level=1)
    assert list(iter_records(payload, length)) == [record]


# ------------------------------------------------------------------------------------ manifests, chunks

releases = st.fixed_dictionaries(
    {
        "version": st.integers(1, 2**63),
        "full": st.booleans(),
        "payload": st.binary(min_size=1, max_size=2000),
        "decompressed_length": st.integers(1, DEFAULT_LIMITS.max_decompressed_bytes),
        "chunk_size": st.integers(256, 1024),
        "rollout_percent": st.floats(0, 100),
        "rollout_salt": st.text(max_size=64),
        "created": st.integers(0, 2**40),
        "lifetime_s": st.integers(1, 2**31),
        "model": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
    }
)


@settings(PROPERTY, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(releases, st.integers(0, 2**63))
@pytest.mark.slow
def test_signed_manifest_reads_back_as_the_same_manifest(
    build_release: Callable[..., Release], trusted: dict[str, VerifyKey], fields: dict, base_version: int
) -> None:
    if fields["full"]:
        release = build_release(**fields, base_version=None, base_sha256=None)
    else:
        release = build_release(**fields, base_version=base_version, base_sha256=hashlib.sha256(b"b").digest())
    assert read_manifest(release.envelope, trusted) == release.manifest
    assert release.manifest.chunk_count == len(release.chunks)


@st.composite
def arrival_orders(draw: st.DrawFn, count: int) -> list[int]:
    """Every index once in a random order, with random duplicates mixed in."""
    order = draw(st.permutations(range(count)))
    duplicates = draw(st.lists(st.integers(0, count - 1), max_size=count))
    positions = draw(st.lists(st.integers(0, count), min_size=len(duplicates), max_size=len(duplicates)))
    for index, position in zip(duplicates, positions, strict=True):
        order.insert(max(position, order.index(index) + 1), index)  # a duplicate follows its first copy
    return order


@settings(PROPERTY, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=3000), st.integers(256, 700), st.data())
def test_chunks_reassemble_in_any_order_with_duplicates(
    build_release: Callable[..., Release], payload: bytes, chunk_size: int, data: st.DataObject
) -> None:
    release = build_release(payload=payload, chunk_size=chunk_size)
    chunks = split_payload(payload, chunk_size)
    assert chunks == release.chunks and b"".join(chunks) == payload
    assert all(len(c) == chunk_size for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk_size
    reassembler, seen = Reassembler(release.manifest), set()
    for index in data.draw(arrival_orders(len(chunks))):
        assert reassembler.complete == (len(seen) == len(chunks))
        assert reassembler.missing() == sorted(set(range(len(chunks))) - seen)
        assert reassembler.add(index, chunks[index]) == (index not in seen)
        seen.add(index)
    assert reassembler.complete and reassembler.missing() == []
    assert reassembler.payload() == payload


@settings(PROPERTY, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=257, max_size=3000), st.data())
def test_incomplete_reassembly_reports_exactly_the_absent_chunks_and_refuses_payload(
    build_release: Callable[..., Release], payload: bytes, data: st.DataObject
) -> None:
    release = build_release(payload=payload, chunk_size=256)
    count = len(release.chunks)
    absent = data.draw(st.sets(st.integers(0, count - 1), min_size=1))
    reassembler = Reassembler(release.manifest)
    for index in data.draw(st.permutations(sorted(set(range(count)) - absent))):
        reassembler.add(index, release.chunks[index])
    assert reassembler.missing() == sorted(absent)
    try:
        reassembler.payload()
    except IntegrityError:
        return
    raise AssertionError("an incomplete reassembly must refuse to give a payload")
