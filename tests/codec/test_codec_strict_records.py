"""Strict reading of arrays and records: anything outside the format is refused with the right error."""

from __future__ import annotations

import copy
import math

import msgpack
import numpy as np
import pytest

from codec import DEFAULT_LIMITS, FormatError, LimitError, NonFiniteError, UpdateError
from codec.arrays import ALL_DTYPES, WireArray, pack, read_array, read_shape, unpack
from codec.limits import Limits
from codec.records import record_from_msgpack

F32_SPECIALS = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}


def array_map(dtype: str, shape: list, data: bytes) -> dict:
    return {"dtype": dtype, "shape": shape, "data": data}


def f32_map(values: list[float]) -> dict:
    return pack(np.array(values, np.float32), "f32").to_msgpack()


def read(value: object, allowed: tuple[str, ...] = ALL_DTYPES, limits: Limits = DEFAULT_LIMITS) -> WireArray:
    return read_array(value, limits, "x", allowed)


# ---------------------------------------------------------------------------------------------- layout


def test_i4_codes_pack_two_per_byte_low_nibble_first() -> None:
    assert pack(np.array([1, -1, 3], np.int8), "i4").data == bytes([0xF1, 0x03])


def test_trit_codes_pack_five_per_byte_as_base_3_digits_first_code_least_significant() -> None:
    # digits are code + 1: [2, 0, 1, 2, 2] -> 2 + 0*3 + 1*9 + 2*27 + 2*81 = 227; then [1, 0] -> 1
    assert pack(np.array([1, -1, 0, 1, 1, 0, -1], np.int8), "trit").data == bytes([227, 1])


def test_trit_codes_outside_minus_one_to_one_cannot_be_packed() -> None:
    with pytest.raises(FormatError):
        pack(np.array([0, 2], np.int8), "trit")


def test_b1_signs_pack_least_significant_bit_first() -> None:
    signs = np.array([1, -1, -1, 1, 1, 1, 1, 1, -1, 1], np.int8)
    assert pack(signs, "b1").data == bytes([0b11111001, 0b00000010])


def test_multibyte_values_are_little_endian() -> None:
    assert pack(np.array([1.0], np.float32), "f32").data == b"\x00\x00\x80\x3f"
    assert pack(np.array([-2], np.int16), "i16").data == b"\xfe\xff"
    assert pack(np.array([258], np.uint32), "u32").data == b"\x02\x01\x00\x00"


# -------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("dtype", "data"),
    [("i8", b"\x01\x80"), ("i16", b"\x01\x00\x00\x80"), ("i4", b"\x81"), ("i4", b"\x18"), ("i4", b"\x08")],
    ids=["i8=-128", "i16=-32768", "i4=-8-high", "i4=-8-low", "i4=-8-odd"],
)
def test_the_most_negative_code_is_refused(dtype: str, data: bytes) -> None:
    count = 1 if data == b"\x08" else 2
    with pytest.raises(FormatError):
        read(array_map(dtype, [count], data))


def test_the_symmetric_extremes_are_accepted() -> None:
    assert unpack(read(array_map("i8", [2], b"\x7f\x81"))).tolist() == [127, -127]
    assert unpack(read(array_map("i16", [2], b"\xff\x7f\x01\x80"))).tolist() == [32767, -32767]
    assert unpack(read(array_map("i4", [2], b"\x97"))).tolist() == [7, -7]  # low nibble first
    assert unpack(read(array_map("trit", [5], bytes([242])))).tolist() == [1, 1, 1, 1, 1]  # 3^5 - 1


@pytest.mark.parametrize("byte", [243, 255])
def test_a_trit_byte_above_five_base_3_digits_is_refused(byte: int) -> None:
    with pytest.raises(FormatError, match="243"):
        read(array_map("trit", [5], bytes([byte])))


@pytest.mark.parametrize(
    ("dtype", "count", "data"),
    [("i4", 3, b"\x11\x11"), ("b1", 3, b"\x0f"), ("b1", 9, b"\xff\x02"),
     ("trit", 2, b"\x09"), ("trit", 6, b"\x00\x03")],
)
def test_nonzero_padding_after_the_last_code_is_refused(dtype: str, count: int, data: bytes) -> None:
    with pytest.raises(FormatError):
        read(array_map(dtype, [count], data))


@pytest.mark.parametrize("special", list(F32_SPECIALS))
def test_non_finite_floats_are_refused(special: str) -> None:
    with pytest.raises(NonFiniteError) as caught:
        read(f32_map([1.0, F32_SPECIALS[special], 2.0]))
    assert caught.value.code == "non-finite"


@pytest.mark.parametrize("delta", [-1, 1])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_data_of_the_wrong_length_is_refused(dtype: str, delta: int) -> None:
    valid = pack(np.ones((3, 3), np.float32 if dtype == "f32" else np.int8), dtype).to_msgpack()
    valid["data"] = valid["data"][:-1] if delta < 0 else valid["data"] + b"\x00"
    with pytest.raises(FormatError):
        read(valid)


@pytest.mark.parametrize(
    "value",
    [None, [], {"dtype": "f32", "shape": [1]}, {**f32_map([1.0]), "extra": 1}, {**f32_map([1.0]), "data": "text"},
     {**f32_map([1.0]), "dtype": "f64"}, {**f32_map([1.0]), "dtype": b"f32"}, {**f32_map([1.0]), "dtype": ["f32"]}],
    ids=["nil", "list", "missing-key", "extra-key", "str-data", "unknown-dtype", "bin-dtype", "list-dtype"],
)
def test_malformed_array_maps_are_refused(value: object) -> None:
    with pytest.raises(FormatError):
        read(value)


def test_a_dtype_outside_the_allowed_set_is_refused() -> None:
    with pytest.raises(FormatError):
        read(pack(np.ones(2, np.int8), "i8").to_msgpack(), allowed=("f32",))


@pytest.mark.parametrize(
    "shape", [[], [0], [-1], [2, 0], [True], [1.0], ["2"], [None], (2,), 2, [1] * 9],
    ids=["empty", "zero", "negative", "inner-zero", "bool", "float", "str", "nil", "tuple", "int", "nine-dims"],
)
def test_invalid_shapes_are_refused(shape: object) -> None:
    with pytest.raises(FormatError):
        read_shape(shape, DEFAULT_LIMITS, "x")


def test_a_shape_over_the_element_limit_is_refused_before_allocating() -> None:
    with pytest.raises(LimitError):
        read(array_map("f32", [2**31, 2**31], b""))
    with pytest.raises(LimitError):
        read_shape([10, 11], Limits(max_tensor_elements=100), "x")
    assert read_shape([10, 10], Limits(max_tensor_elements=100), "x") == (10, 10)


# --------------------------------------------------------------------------------------------- records


def codes(shape: tuple[int, ...], dtype: str = "i8", value: int = 1) -> dict:
    return pack(np.full(shape, value, np.int16 if dtype == "i16" else np.int8), dtype).to_msgpack()


def lowrank(out: int = 4, rest: tuple[int, ...] = (6,), rank: int = 2, dtype: str = "i8") -> dict:
    """A valid lowrank record map for an out × prod(rest) weight."""
    columns = math.prod(rest)
    return {
        "kind": "lowrank", "name": "w", "shape": [out, *rest],
        "u": codes((out, rank), dtype), "u_scale": f32_map([0.5] * out),
        "v": codes((rank, columns), dtype), "v_scale": f32_map([0.25] * columns),
    }


def seeded_signs(shape: list[int], seed: int) -> dict:
    """A seeded sign factor's map (docs/format.md, lowrank)."""
    return {"dtype": "b1", "shape": shape, "seed": seed, "gen": "shake128-signs"}


def dense(dtype: str = "i8", rows: int = 3, scale_rows: int | None = 1) -> dict:
    value = {"kind": "dense", "name": "b", "mode": "add", "values": codes((rows, 2), dtype)}
    if dtype == "f32":
        value["values"] = f32_map([1.0] * rows * 2) | {"shape": [rows, 2]}
    if scale_rows is not None:
        value["scale"] = f32_map([0.5] * scale_rows)
    return value


def sparse(gaps: list[int], shape: list[int], values: int | None = None) -> dict:
    count = len(gaps) if values is None else values
    return {
        "kind": "sparse", "name": "s", "shape": shape, "mode": "set",
        "gaps": pack(np.array(gaps, np.uint32), "u32").to_msgpack(), "values": f32_map([1.0] * count),
    }


VALID = {
    "lowrank": lowrank(), "lowrank-4d": lowrank(rest=(2, 3, 3)), "dense-codes": dense(),
    "dense-per-row": dense(scale_rows=3), "dense-f32": dense("f32", scale_rows=None),
    "sparse": sparse([1, 2, 3], [3, 3]), "full": {"kind": "full", "name": "m", "data": b"\x00"},
    "lowrank-seeded-v": {**lowrank(), "v": seeded_signs([2, 6], 7)},
    "lowrank-seeded-u": {**lowrank(dtype="i4"), "u": seeded_signs([4, 2], 0)},
    "lowrank-one-scale": {**lowrank(dtype="trit"), "u_scale": f32_map([0.5]), "v_scale": f32_map([0.25])},
    "lowrank-b1": {**lowrank(dtype="b1"), "v": seeded_signs([2, 6], 3)},
}


@pytest.mark.parametrize("name", list(VALID))
def test_the_reference_records_are_valid(name: str) -> None:
    record = record_from_msgpack(copy.deepcopy(VALID[name]), DEFAULT_LIMITS)
    assert msgpack.unpackb(msgpack.packb(record.to_msgpack())) == VALID[name]


@pytest.mark.parametrize("kind", ["conv", "", "LOWRANK", None, 1, b"lowrank", ["lowrank"], {"k": 1}])
def test_an_unknown_record_kind_is_refused(kind: object) -> None:
    with pytest.raises(FormatError):
        record_from_msgpack({**lowrank(), "kind": kind}, DEFAULT_LIMITS)


@pytest.mark.parametrize("value", [None, [], "lowrank", b"", 7])
def test_a_record_that_is_not_a_map_is_refused(value: object) -> None:
    with pytest.raises(FormatError):
        record_from_msgpack(value, DEFAULT_LIMITS)


@pytest.mark.parametrize("name", list(VALID))
def test_a_missing_or_unknown_key_is_refused(name: str) -> None:
    for key in VALID[name]:
        broken = copy.deepcopy(VALID[name])
        del broken[key]
        with pytest.raises(FormatError):
            record_from_msgpack(broken, DEFAULT_LIMITS)
    with pytest.raises(FormatError):
        record_from_msgpack({**copy.deepcopy(VALID[name]), "comment": "x"}, DEFAULT_LIMITS)


@pytest.mark.parametrize(
    "name", ["", "x" * 257, "tab\there", "nul\x00", "newline\n", 5, b"bytes", None],
    ids=["empty", "too-long", "tab", "nul", "newline", "int", "bin", "nil"],
)
def test_an_invalid_record_name_is_refused(name: object) -> None:
    with pytest.raises(FormatError):
        record_from_msgpack({**lowrank(), "name": name}, DEFAULT_LIMITS)


LOWRANK_SHAPE_ERRORS = {
    "u-rows": {"u": codes((5, 2))},
    "v-columns": {"v": codes((2, 7))},
    "rank-mismatch": {"v": codes((3, 6))},
    "u-one-dim": {"u": codes((8,))},
    "u-three-dims": {"u": codes((4, 2, 1))},
    "u-scale-length": {"u_scale": f32_map([0.5] * 3)},
    "v-scale-length": {"v_scale": f32_map([0.5] * 5)},
    "u-scale-2d": {"u_scale": f32_map([0.5] * 4) | {"shape": [4, 1]}},
    "one-dim-tensor": {"shape": [24]},
    "declared-shape": {"shape": [4, 7]},
    "mixed-dtypes": {"v": codes((2, 6), "i16")},
    "f32-factors": {"u": f32_map([1.0] * 8) | {"shape": [4, 2]}, "v": f32_map([1.0] * 12) | {"shape": [2, 6]}},
    "u32-factors": {"u": pack(np.ones((4, 2), np.uint32), "u32").to_msgpack(),
                    "v": pack(np.ones((2, 6), np.uint32), "u32").to_msgpack()},
}


@pytest.mark.parametrize("case", list(LOWRANK_SHAPE_ERRORS))
def test_lowrank_factors_that_do_not_match_the_tensor_are_refused(case: str) -> None:
    with pytest.raises(FormatError):
        record_from_msgpack({**lowrank(), **LOWRANK_SHAPE_ERRORS[case]}, DEFAULT_LIMITS)


def test_a_rank_over_the_limit_is_refused() -> None:
    with pytest.raises(LimitError):
        record_from_msgpack(lowrank(rank=5), Limits(max_rank=4))
    assert record_from_msgpack(lowrank(rank=4), Limits(max_rank=4)).rank == 4


@pytest.mark.parametrize("special", list(F32_SPECIALS))
@pytest.mark.parametrize("where", ["u_scale", "v_scale", "dense-scale", "dense-values", "sparse-values"])
def test_non_finite_scales_and_values_are_refused(where: str, special: str) -> None:
    bad = F32_SPECIALS[special]
    if where in ("u_scale", "v_scale"):
        value = {**lowrank(), where: f32_map([0.5] * (3 if where == "u_scale" else 5) + [bad])}
    elif where == "dense-scale":
        value = {**dense(), "scale": f32_map([bad])}
    elif where == "dense-values":
        value = {**dense("f32", scale_rows=None), "values": f32_map([1.0] * 5 + [bad]) | {"shape": [3, 2]}}
    else:
        value = {**sparse([0, 1], [4]), "values": f32_map([bad, 1.0])}
    with pytest.raises(NonFiniteError) as caught:
        record_from_msgpack(value, DEFAULT_LIMITS)
    assert caught.value.code == "non-finite"


@pytest.mark.parametrize(
    "value",
    [dense("i8", scale_rows=None), dense("f32", scale_rows=1), dense("i8", rows=3, scale_rows=2),
     {**dense(), "mode": "mul"}, {**dense(), "mode": None}, {**dense(), "scale": codes((1,))}],
    ids=["codes-without-scale", "f32-with-scale", "scale-rows", "unknown-mode", "nil-mode", "integer-scale"],
)
def test_dense_records_with_inconsistent_scale_or_mode_are_refused(value: dict) -> None:
    with pytest.raises(FormatError):
        record_from_msgpack(value, DEFAULT_LIMITS)


@pytest.mark.parametrize(
    "value",
    [sparse([1, 0], [4]), sparse([3, 1], [4]), sparse([4], [4]), sparse([0, 1, 1, 1, 1], [4]),
     sparse([0, 1], [4], values=3), {**sparse([0, 1], [4]), "gaps": f32_map([0.0, 1.0])},
     {**sparse([0, 1], [4]), "gaps": pack(np.array([[0, 1]], np.uint32), "u32").to_msgpack(),
      "values": f32_map([1.0, 1.0]) | {"shape": [1, 2]}},
     {**sparse([0, 1], [4]), "values": codes((2,)), "scale": f32_map([1.0, 1.0])},
     {**sparse([1, 4294967295], [2**25]), "mode": "add"}],
    ids=["repeated-position", "past-the-end", "first-past-the-end", "more-than-elements", "length-mismatch",
         "float-gaps", "two-dim-gaps", "per-row-scale", "gap-overflow"],
)
def test_sparse_records_with_bad_positions_or_values_are_refused(value: dict) -> None:
    with pytest.raises(FormatError):
        record_from_msgpack(value, DEFAULT_LIMITS)


@pytest.mark.parametrize("data", [b"", "text", None, [1, 2]])
def test_a_full_record_needs_non_empty_bytes(data: object) -> None:
    with pytest.raises(FormatError):
        record_from_msgpack({"kind": "full", "name": "m", "data": data}, DEFAULT_LIMITS)


def test_every_refusal_is_a_codec_error_that_is_also_a_value_error() -> None:
    for error in (FormatError, LimitError, NonFiniteError):
        assert issubclass(error, UpdateError) and issubclass(error, ValueError)
