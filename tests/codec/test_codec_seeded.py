"""Seeded sign factors in lowrank records: the generator's known answers, round trips, exact apply
(identical bytes to the same codes sent as an array) and strict refusal of every malformed form."""

from __future__ import annotations

import copy
import hashlib
import time
import tracemalloc
from pathlib import Path

import msgpack
import numpy as np
import pytest

from codec import (
    DEFAULT_LIMITS,
    FormatError,
    LimitError,
    apply_payload,
    encode_payload,
    iter_records,
    load_weights,
    write_weights,
)
from codec.apply import exact_product
from codec.arrays import WireArray, pack, unpack
from codec.describe import describe
from codec.limits import Limits
from codec.payload import compress
from codec.records import LowRankRecord, record_from_msgpack
from codec.seeded import Factor, SeededSigns, factor_codes

# The spec's table (docs/format.md, "Seeded sign factors"): the first 4 output bytes and 16 codes per seed.
KNOWN_ANSWERS = {
    0: ("b66bf552", "- + + - + + - + + + - + - + + -"),
    1: ("4ba9407a", "+ + - + - - + - + - - + - + - +"),
    2**64 - 1: ("8c670a19", "- - + + - - - + + + + - - + + -"),
}


def reference_codes(shape: tuple[int, int], seed: int) -> np.ndarray:
    """The spec's codes computed independently: bit k of the SHAKE128 stream as a little-endian integer."""
    count = shape[0] * shape[1]
    stream = hashlib.shake_128(b"rankcast-signs-v1" + seed.to_bytes(8, "little")).digest((count + 7) // 8)
    bits = int.from_bytes(stream, "little")
    return np.array([1 if bits >> k & 1 else -1 for k in range(count)], np.int64).reshape(shape)


def f32(values: np.ndarray) -> WireArray:
    return pack(np.asarray(values, np.float32), "f32")


def seeded_record(
    side: str, dtype: str = "i8", out: int = 6, rest: int = 10, rank: int = 3, seed: int = 42
) -> LowRankRecord:
    """A lowrank record whose ``side`` factor is seeded and whose other factor holds random ``dtype`` codes."""
    rng = np.random.default_rng(seed)
    high = {"i4": 7, "i8": 127, "i16": 32767}[dtype]
    u_scale, v_scale = f32(rng.uniform(0.5, 2, out) * 1e-3), f32(rng.uniform(0.5, 2, rest))
    if side == "u":
        stored = rng.integers(-high, high + 1, (rank, rest)).astype(np.int16)
        return LowRankRecord("w", (out, rest), SeededSigns((out, rank), seed), u_scale, pack(stored, dtype), v_scale)
    stored = rng.integers(-high, high + 1, (out, rank)).astype(np.int16)
    return LowRankRecord("w", (out, rest), pack(stored, dtype), u_scale, SeededSigns((rank, rest), seed), v_scale)


def explicit(record: LowRankRecord, dtype: str) -> LowRankRecord:
    """The same record with its seeded factor's codes stored as a ``dtype`` array."""
    def stored(factor: Factor) -> WireArray:
        return pack(factor_codes(factor), dtype) if isinstance(factor, SeededSigns) else factor

    return LowRankRecord(record.name, record.shape, stored(record.u), record.u_scale, stored(record.v), record.v_scale)


def applied(tmp_path: Path, weight: np.ndarray, record: LowRankRecord, name: str) -> Path:
    """An RCW file holding ``weight`` as tensor w, with ``record`` applied to it."""
    path = tmp_path / f"{name}.rcw"
    write_weights(path, {"w": weight})
    payload, length = encode_payload([record], level=1)
    apply_payload(path, payload, length)
    return path


# ------------------------------------------------------------------------------------------ generator


@pytest.mark.parametrize("seed", list(KNOWN_ANSWERS))
def test_the_generator_gives_the_specified_known_answers(seed: int) -> None:
    output, signs = KNOWN_ANSWERS[seed]
    assert hashlib.shake_128(b"rankcast-signs-v1" + seed.to_bytes(8, "little")).hexdigest(4) == output
    assert SeededSigns((4, 8), seed).expand().data == bytes.fromhex(output)
    expected = [1 if sign == "+" else -1 for sign in signs.split()]
    assert factor_codes(SeededSigns((2, 8), seed)).reshape(-1).tolist() == expected
    assert reference_codes((2, 8), seed).reshape(-1).tolist() == expected


@pytest.mark.parametrize(("shape", "seed"), [((7, 13), 5), ((1, 1), 9), ((64, 3), 2**63 + 17), ((3, 257), 0)])
def test_the_codes_are_the_bits_of_the_shake128_stream_in_c_order(shape: tuple[int, int], seed: int) -> None:
    codes = factor_codes(SeededSigns(shape, seed))
    assert codes.shape == shape and codes.dtype == np.int8
    assert np.array_equal(codes, reference_codes(shape, seed))


def test_different_seeds_give_different_factors_and_a_factor_is_a_prefix_of_a_longer_one() -> None:
    assert not np.array_equal(factor_codes(SeededSigns((8, 8), 1)), factor_codes(SeededSigns((8, 8), 2)))
    long = factor_codes(SeededSigns((1, 100), 3)).reshape(-1)
    assert np.array_equal(factor_codes(SeededSigns((4, 9), 3)).reshape(-1), long[:36])


def test_the_expanded_array_is_a_valid_b1_array_with_cleared_padding() -> None:
    array = SeededSigns((3, 5), 11).expand()
    assert array.dtype == "b1" and len(array.data) == 2 and array.data[-1] >> 7 == 0
    assert np.array_equal(unpack(array), reference_codes((3, 5), 11))


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("side", ["u", "v"])
def test_a_seeded_record_roundtrips_through_msgpack_and_the_payload(side: str) -> None:
    record = seeded_record(side)
    decoded = msgpack.unpackb(msgpack.packb(record.to_msgpack()))
    shape = list(getattr(record, side).shape)
    assert decoded[side] == {"dtype": "b1", "shape": shape, "seed": 42, "gen": "shake128-signs"}
    assert record_from_msgpack(decoded, DEFAULT_LIMITS) == record
    payload, length = encode_payload([record], level=3)
    assert list(iter_records(payload, length)) == [record]


def test_the_largest_seed_travels_as_a_msgpack_uint64() -> None:
    record = LowRankRecord("w", (2, 4), pack(np.ones((2, 1), np.int8), "i8"), f32(np.ones(2)),
                           SeededSigns((1, 4), 2**64 - 1), f32(np.ones(4)))
    payload, length = encode_payload([record], level=1)
    assert list(iter_records(payload, length)) == [record]
    assert b"\xcf" + b"\xff" * 8 in msgpack.packb(record.to_msgpack())


def test_describe_names_the_seeded_factor() -> None:
    payload, _ = encode_payload([seeded_record("v", rank=3, rest=10)], level=1)
    summary = describe(payload)
    assert "rank 3 i8" in summary
    assert "v: seeded signs 3x10 (seed 42, shake128-signs)" in summary


# --------------------------------------------------------------------------------------------- apply


@pytest.mark.parametrize("dtype", ["i4", "i8", "i16"])
@pytest.mark.parametrize("side", ["u", "v"])
def test_apply_gives_the_same_bytes_as_the_codes_sent_explicitly(tmp_path: Path, side: str, dtype: str) -> None:
    record = seeded_record(side, dtype, out=9, rest=14, rank=4)
    weight = np.random.default_rng(1).normal(size=(9, 14)).astype(np.float32)
    seeded = applied(tmp_path, weight, record, "seeded")
    assert seeded.read_bytes() == applied(tmp_path, weight, explicit(record, dtype), "explicit").read_bytes()
    u = factor_codes(record.u).astype(np.int64)
    v = factor_codes(record.v).astype(np.int64)
    delta = ((u @ v).astype(np.float32) * unpack(record.u_scale)[:, None]) * unpack(record.v_scale)[None, :]
    written = load_weights(seeded)["w"]
    assert written.tobytes() == (weight + delta).tobytes() and not np.array_equal(written, weight)


@pytest.mark.parametrize(("dtype", "high"), [("i8", 127), ("i16", 32767)])
def test_the_product_with_extreme_codes_at_rank_1024_is_exact(tmp_path: Path, dtype: str, high: int) -> None:
    """i8 with signs stays below 2^24 (float32 path); i16 with signs does not (float64 path): both exact."""
    signs = SeededSigns((6, 1024), 7)
    stored = np.repeat(high * factor_codes(signs)[0].astype(np.int16)[:, None], 5, axis=1)  # row 0: all terms +high
    exact = factor_codes(signs).astype(np.int64) @ stored.astype(np.int64)
    assert (np.abs(exact).max() < 2**24) == (dtype == "i8")
    product = exact_product(factor_codes(signs), stored, 1, high)
    assert product.tobytes() == exact.astype(np.float64).astype(np.float32).tobytes()
    record = LowRankRecord("w", (6, 5), signs, f32(np.ones(6)), pack(stored, dtype), f32(np.ones(5)))
    written = applied(tmp_path, np.zeros((6, 5), np.float32), record, "extreme")
    stored_too = applied(tmp_path, np.zeros((6, 5), np.float32), explicit(record, dtype), "explicit")
    assert written.read_bytes() == stored_too.read_bytes()
    assert load_weights(written)["w"].tobytes() == product.tobytes()


# ------------------------------------------------------------------------------------------- refusals


def wire(side: str = "v", **sizes: int) -> dict:
    """A valid record map as a reader receives it, with a seeded ``side`` factor."""
    return msgpack.unpackb(msgpack.packb(seeded_record(side, **sizes).to_msgpack()))


def with_factor(side: str, **changes: object) -> dict:
    value = wire(side)
    value[side] = {**value[side], **changes}
    return value


SEED_ERRORS = {
    "negative": -1, "too-large": 2**64, "bool-true": True, "bool-false": False, "float": 1.0, "str": "1",
    "bin": b"\x01", "nil": None, "list": [1],
}


@pytest.mark.parametrize("side", ["u", "v"])
@pytest.mark.parametrize("case", list(SEED_ERRORS))
def test_a_seed_that_is_not_an_unsigned_64_bit_int_is_refused(side: str, case: str) -> None:
    with pytest.raises(FormatError, match="seed"):
        record_from_msgpack(with_factor(side, seed=SEED_ERRORS[case]), DEFAULT_LIMITS)


def _both_seeded() -> dict:
    value = wire("v")
    value["u"] = {"dtype": "b1", "shape": [6, 3], "seed": 1, "gen": "shake128-signs"}
    return value


def _without(key: str) -> dict:
    value = wire("v")
    del value["v"][key]
    return value


MALFORMED = {
    "both-seeded": _both_seeded(),
    "unknown-generator": with_factor("v", gen="shake256-signs"),
    "bin-generator": with_factor("v", gen=b"shake128-signs"),
    "nil-generator": with_factor("v", gen=None),
    "i8-dtype": with_factor("v", dtype="i8"),
    "upper-dtype": with_factor("v", dtype="B1"),
    "nil-dtype": with_factor("v", dtype=None),
    "extra-key": with_factor("v", comment="x"),
    "with-data": with_factor("v", data=b"\x00" * 4),
    "no-gen": _without("gen"),
    "no-seed": _without("seed"),
    "no-dtype": _without("dtype"),
    "no-shape": _without("shape"),
    "one-dim": with_factor("v", shape=[30]),
    "three-dims": with_factor("v", shape=[3, 10, 1]),
    "rank-mismatch": with_factor("v", shape=[4, 10]),
    "columns-mismatch": with_factor("v", shape=[3, 11]),
    "u-rows-mismatch": with_factor("u", shape=[5, 3]),
    "zero-dim": with_factor("v", shape=[3, 0]),
    "bool-dim": with_factor("v", shape=[3, True]),
    "str-shape": with_factor("v", shape="3x10"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_seeded_factors_are_refused(case: str) -> None:
    with pytest.raises(FormatError):
        record_from_msgpack(copy.deepcopy(MALFORMED[case]), DEFAULT_LIMITS)


def test_the_valid_base_of_the_refusal_cases_is_accepted() -> None:
    assert isinstance(record_from_msgpack(wire("v"), DEFAULT_LIMITS).v, SeededSigns)
    assert isinstance(record_from_msgpack(wire("u"), DEFAULT_LIMITS).u, SeededSigns)


def test_a_seeded_factor_over_the_rank_limit_is_refused() -> None:
    with pytest.raises(LimitError):
        record_from_msgpack(wire("v"), Limits(max_rank=2))
    assert record_from_msgpack(wire("v"), Limits(max_rank=3)).rank == 3


def test_a_seeded_factor_over_the_element_limit_is_refused() -> None:
    """Here the seeded factor (4 × 10) is larger than the tensor (2 × 10): its own count is checked."""
    value = wire("v", out=2, rest=10, rank=4)
    with pytest.raises(LimitError):
        record_from_msgpack(copy.deepcopy(value), Limits(max_tensor_elements=39))
    assert record_from_msgpack(value, Limits(max_tensor_elements=40)).v.size == 40


@pytest.mark.parametrize("side", ["u", "v"])
def test_a_huge_seeded_factor_is_refused_quickly_without_allocating(side: str) -> None:
    rank, huge = DEFAULT_LIMITS.max_rank, 10**12
    value = wire(side)  # a 6 × 10 tensor: only the seeded factor is out of bounds
    value[side]["shape"] = [rank, huge] if side == "v" else [huge, rank]
    document = msgpack.packb({"format": 1, "records": [value]})
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(LimitError):
            record_from_msgpack(value, DEFAULT_LIMITS)
        with pytest.raises(LimitError):
            list(iter_records(compress(document, level=1), len(document)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1.0
    assert peak < 4 * 1024 * 1024
