"""Payload format 2 (codec.compact): records by tensor position, round trips, exact apply and refusals."""

from __future__ import annotations

import hashlib
import math

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec import FormatError, LimitError, ModelMismatchError, NonFiniteError, encode_weights, read_slots
from codec.apply import apply_to_bytes
from codec.arrays import is_bfloat16, pack, round_to_bfloat16
from codec.compact import EXPLICIT_SEED, SEEDED_SCALE_SENT, read_heads
from codec.dictionary import DICTIONARY_BYTES, READER_DICTIONARY_BYTES
from codec.leb128 import encode_uvarint, read_uvarint
from codec.limits import DEFAULT_LIMITS, Limits
from codec.payload import compress, decode_payload, encode_document, encode_payload, payload_format
from codec.quantise import dense_record, full_record, sparse_record
from codec.records import DenseRecord, LowRankRecord, Record, SparseRecord
from codec.seeded import SeededSigns

PROPERTY = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

SHAPES = {"conv.weight": (6, 2, 3, 3), "conv.bias": (6,), "fc.weight": (5, 54), "fc.bias": (5,),
          "head.weight": (10, 5), "head.bias": (10,)}


@pytest.fixture(scope="module")
def model() -> bytes:
    rng = np.random.default_rng(3)
    return encode_weights({name: rng.normal(size=shape) for name, shape in SHAPES.items()})


def bf16(values: np.ndarray) -> np.ndarray:
    return round_to_bfloat16(np.asarray(values, np.float32))


def seeded(name: str, seed: int, dtype: str = "trit", rank: int = 2, scale: float = 0.0625) -> LowRankRecord:
    """A record as the publisher trains them: V seeded with scale 1.0, U codes with one bfloat16 scale."""
    out, rest = SHAPES[name][0], math.prod(SHAPES[name][1:])
    codes = np.random.default_rng(seed).integers(-1, 2, (out, rank))
    return LowRankRecord(name, SHAPES[name], pack(codes, dtype), pack(bf16([scale]), "f32"),
                         SeededSigns((rank, rest), seed), pack(np.ones(1, np.float32), "f32"))


def document(records: list[Record], model: bytes) -> dict:
    return msgpack.unpackb(encode_document(records, read_slots(model)))


def test_records_come_back_in_the_model_order_with_their_names_and_shapes(model: bytes) -> None:
    records = [seeded("head.weight", 8), dense_record("fc.bias", np.arange(5.0), dtype="i8"), seeded("conv.weight", 7)]
    payload, length = encode_payload(records, layout=read_slots(model))
    assert payload_format(payload, length) == 2
    assert decode_payload(payload, length, layout=read_slots(model)) == [records[2], records[1], records[0]]


def test_a_document_carries_no_names_no_shapes_and_only_the_first_seed(model: bytes) -> None:
    records = [seeded("conv.weight", 41), seeded("fc.weight", 42), seeded("head.weight", 43)]
    doc = document(records, model)
    assert doc["seed"] == 41 and doc["scale_dtype"] == "bf16"
    assert b"weight" not in encode_document(records, read_slots(model))
    assert len(doc["scales"]) == 2 * 3  # one bfloat16 scale a record: the seeded factors' 1.0 is implied
    heads, offset = [], 0
    while offset < len(doc["heads"]):
        value, offset = read_uvarint(doc["heads"], offset, "test")
        heads.append(value)
    assert heads == [0, 0x48, 2, 1, 0x48, 2, 1, 0x48, 2]  # gap, form (trit, V seeded), rank; positions 0, 2, 4


def test_seeds_that_do_not_follow_and_sent_seeded_scales_travel_in_the_head(model: bytes) -> None:
    odd = seeded("fc.weight", 1000)
    sent_scale = LowRankRecord(odd.name, odd.shape, odd.u, odd.u_scale, odd.v, pack(bf16([0.5]), "f32"))
    records = [seeded("conv.weight", 41), sent_scale]
    layout = read_slots(model)
    heads = read_heads(document(records, model)["heads"], 2, 41, layout, DEFAULT_LIMITS)
    assert [head.seed for head in heads] == [41, 1000]
    assert not heads[0].form & (EXPLICIT_SEED | SEEDED_SCALE_SENT)
    assert heads[1].form & EXPLICIT_SEED and heads[1].form & SEEDED_SCALE_SENT
    payload, length = encode_payload(records, layout=layout)
    assert decode_payload(payload, length, layout=layout) == records


def test_scales_travel_in_two_bytes_only_when_all_are_bfloat16(model: bytes) -> None:
    exact = dense_record("fc.bias", np.linspace(-1, 1, 5), dtype="i8", bfloat16_scales=True)
    inexact = dense_record("head.bias", np.linspace(-1, 1, 10) / 3, dtype="i8")
    assert is_bfloat16(np.frombuffer(exact.scale.data, np.float32))
    assert not is_bfloat16(np.frombuffer(inexact.scale.data, np.float32))
    assert document([exact], model)["scale_dtype"] == "bf16"
    assert document([exact, inexact], model)["scale_dtype"] == "f32"
    payload, length = encode_payload([exact, inexact], layout=read_slots(model))
    assert decode_payload(payload, length, layout=read_slots(model)) == [exact, inexact]


def test_both_formats_apply_to_the_same_bytes(model: bytes) -> None:
    rng = np.random.default_rng(9)
    records = [
        seeded("conv.weight", 3, "i4"),
        dense_record("conv.bias", rng.normal(size=6), "set"),
        LowRankRecord("fc.weight", (5, 54), pack(rng.integers(-7, 8, (5, 3)), "i4"), pack(rng.random(5), "f32"),
                      pack(rng.integers(-7, 8, (3, 54)), "i4"), pack(rng.random(54), "f32")),
        sparse_record("head.weight", (10, 5), np.array([1, 7, 49]), rng.normal(size=3), "add", "i8"),
        dense_record("head.bias", rng.normal(size=10), dtype="b1"),
    ]
    first = apply_to_bytes(model, *encode_payload(records))
    second = apply_to_bytes(model, *encode_payload(records, layout=read_slots(model)))
    assert first == second and first[0] != model


def test_records_larger_than_a_read_of_the_stream_come_back_whole() -> None:
    """A device reads the decompressed stream 64 KiB at a time; a record's codes may span many reads."""
    rng = np.random.default_rng(2)
    big = encode_weights({"wide.weight": np.zeros((300, 400)), "wide.bias": np.zeros(300)})
    records = [dense_record("wide.weight", rng.normal(size=(300, 400))), dense_record("wide.bias", np.ones(300))]
    payload, length = encode_payload(records, layout=read_slots(big))
    assert length > 4 * 65536
    assert decode_payload(payload, length, layout=read_slots(big)) == records
    assert apply_to_bytes(big, payload, length) == apply_to_bytes(big, *encode_payload(records))


def test_a_full_record_stays_in_format_1_even_with_a_layout(model: bytes) -> None:
    payload, length = encode_payload([full_record(b"a model file")], layout=read_slots(model))
    assert payload_format(payload, length) == 1


def test_format_2_needs_the_model_and_says_so(model: bytes) -> None:
    payload, length = encode_payload([seeded("fc.weight", 1)], layout=read_slots(model))
    with pytest.raises(FormatError, match="needs the model file it applies to"):
        decode_payload(payload, length)


def test_writing_refuses_what_the_model_does_not_have(model: bytes) -> None:
    layout = read_slots(model)
    with pytest.raises(ModelMismatchError, match="does not have"):
        encode_document([dense_record("missing.bias", np.ones(3))], layout)
    with pytest.raises(ModelMismatchError, match="model shape"):
        encode_document([dense_record("fc.bias", np.ones(4))], layout)
    with pytest.raises(FormatError, match="unique"):
        encode_document([dense_record("fc.bias", np.ones(5)), dense_record("fc.bias", np.ones(5))], layout)


def test_frames_of_format_1_decode_with_the_readers_dictionary(model: bytes) -> None:
    """Format 2's template is put before format 1's, so format 1's frames find their matches where they were."""
    assert READER_DICTIONARY_BYTES.endswith(DICTIONARY_BYTES)
    records = [dense_record("fc.bias", np.ones(5), dtype="i8")]
    payload, length = encode_payload(records)  # compressed against format 1's template alone
    assert decode_payload(payload, length) == records


# ------------------------------------------------------------------------------------------- refusals

def compact(model: bytes, **changes: object) -> tuple[bytes, int]:
    """A valid two-record document with some of its fields replaced, compressed."""
    doc = document([seeded("conv.weight", 5), dense_record("fc.bias", np.ones(5), dtype="i8", bfloat16_scales=True)],
                   model)
    doc.update(changes)
    data = msgpack.packb(doc, use_bin_type=True)
    return compress(data, level=1), len(data)


def heads(*numbers: int) -> bytes:
    return b"".join(encode_uvarint(number) for number in numbers)


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"heads": heads(9, 0x48, 2, 0, 0x11)}, ModelMismatchError, "refers to tensor 9, but the model has 6"),
    ({"heads": heads(0, 0x48 | 1 << 12, 2, 2, 0x11)}, FormatError, "bits a lowrank record does not have"),
    ({"heads": heads(0, 0x48, 2, 2, 0x11 | 1 << 5 | 1 << 6 | 1 << 9)}, FormatError, "bits a dense record"),
    ({"heads": heads(0, 0x4B, 2, 2, 0x11)}, FormatError, "no known record kind"),
    ({"heads": heads(0, 0x40, 2, 2, 0x11)}, FormatError, "needs code dtypes"),
    ({"heads": heads(0, 0x48, 2, 2, 0x11) + b"\x00"}, FormatError, "bytes after its last record"),
    ({"heads": b"\x00\xc8\x80\x00"}, FormatError, "shortest form"),
    ({"heads": heads(0, 0x48)}, FormatError, "ends inside a LEB128"),
    ({"heads": heads(0, 0x48, 2000, 2, 0x11)}, LimitError, "rank 2000 is outside"),
    ({"heads": heads(0, 0x08 | 1 << 7, 2, 0, 0x11)}, FormatError, "has no seed to give"),
    ({"data": b"\x00" * 3}, FormatError, "data column is 3 bytes"),
    ({"scales": b"\x00" * 2}, FormatError, "scales column is 2 bytes"),
    ({"scales": b"\xc0\x00\x7f\x7f"}, NonFiniteError, "finite"),
    ({"scale_dtype": "f16"}, FormatError, "scale_dtype 'f16' is unknown"),
    ({"records": 5000}, LimitError, "5000 records exceed"),
    ({"seed": -1}, FormatError, "non-negative integer"),
])
def test_broken_documents_are_refused_with_what_is_wrong(
    model: bytes, changes: dict, error: type[Exception], message: str
) -> None:
    payload, length = compact(model, **changes)
    with pytest.raises(error, match=message):
        decode_payload(payload, length, layout=read_slots(model))


def test_keys_out_of_order_and_unknown_formats_are_refused(model: bytes) -> None:
    doc = document([seeded("conv.weight", 5)], model)
    shuffled = {"format": 2, **{key: doc[key] for key in reversed(list(doc)) if key != "format"}}
    data = msgpack.packb(shuffled, use_bin_type=True)
    with pytest.raises(FormatError, match="in that order"):
        decode_payload(compress(data, level=1), len(data), layout=read_slots(model))
    data = msgpack.packb({**doc, "format": 3}, use_bin_type=True)
    with pytest.raises(FormatError, match=r"format 0x03 is not supported \(this reader knows 1 and 2\)"):
        decode_payload(compress(data, level=1), len(data), layout=read_slots(model))


def test_limits_apply_to_what_the_heads_ask_for_before_anything_is_read(model: bytes) -> None:
    payload, length = compact(model)
    with pytest.raises(LimitError, match="exceed"):
        decode_payload(payload, length, Limits(max_record_bytes=4), layout=read_slots(model))
    with pytest.raises(LimitError, match="rank 2 is outside"):
        decode_payload(payload, length, Limits(max_rank=1), layout=read_slots(model))


# --------------------------------------------------------------------------------------------- properties

@st.composite
def record_sets(draw: st.DrawFn) -> list[Record]:
    """Records of every kind and variant for a random subset of SHAPES' tensors."""
    names = draw(st.lists(st.sampled_from(sorted(SHAPES)), min_size=1, max_size=len(SHAPES), unique=True))
    records: list[Record] = []
    for name in names:
        shape = SHAPES[name]
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        kinds = ["dense", "sparse"] + (["lowrank"] if len(shape) > 1 else [])
        kind = draw(st.sampled_from(kinds))
        scale = draw(st.sampled_from([bf16, lambda v: np.asarray(v, np.float32)]))
        if kind == "dense":
            dtype = draw(st.sampled_from(["f32", "trit", "i4", "i8", "i16", "b1"]))
            records.append(DenseRecord(name, draw(st.sampled_from(["add", "set"])),
                                       *_values(rng, dtype, shape, scale, draw(st.booleans()))))
        elif kind == "sparse":
            count = draw(st.integers(1, math.prod(shape)))
            positions = np.sort(rng.choice(math.prod(shape), count, replace=False))
            gaps = pack(np.diff(positions, prepend=0).astype(np.uint32), "u32")
            dtype = draw(st.sampled_from(["f32", "trit", "i8"]))
            values, value_scale = _values(rng, dtype, (count,), scale, False)
            records.append(SparseRecord(name, shape, draw(st.sampled_from(["add", "set"])), gaps, values, value_scale))
        else:
            records.append(_lowrank(draw, rng, name, shape, scale))
    return records


def _values(rng: np.random.Generator, dtype: str, shape: tuple[int, ...], scale, per_row: bool):  # noqa: ANN001
    if dtype == "f32":
        return pack(rng.normal(size=shape), "f32"), None
    high = {"b1": 1, "trit": 1, "i4": 7, "i8": 127, "i16": 32767}[dtype]
    codes = rng.choice([-1, 1], shape) if dtype == "b1" else rng.integers(-high, high + 1, shape)
    return pack(codes, dtype), pack(scale(rng.random(shape[0] if per_row else 1)), "f32")


def _lowrank(draw: st.DrawFn, rng: np.random.Generator, name: str, shape: tuple[int, ...], scale) -> LowRankRecord:  # noqa: ANN001
    out, rest, rank = shape[0], math.prod(shape[1:]), draw(st.integers(1, 4))
    side = draw(st.sampled_from([None, "u", "v"]))
    dtype = draw(st.sampled_from(["b1", "trit", "i4", "i8", "i16"]))
    u_codes, u_scale = _values(rng, dtype, (out, rank), scale, draw(st.booleans()))
    v_codes, _ = _values(rng, dtype, (rank, rest), scale, False)
    v_scale = pack(scale(rng.random(rest if draw(st.booleans()) else 1)), "f32")
    seed = draw(st.sampled_from([0, 1, 2**64 - 1, int(rng.integers(0, 2**63))]))
    if side == "u":
        u_codes = SeededSigns((out, rank), seed)
        u_scale = draw(st.sampled_from([pack(np.ones(1, np.float32), "f32"), u_scale]))
    if side == "v":
        v_codes = SeededSigns((rank, rest), seed)
        v_scale = draw(st.sampled_from([pack(np.ones(1, np.float32), "f32"), v_scale]))
    return LowRankRecord(name, shape, u_codes, u_scale, v_codes, v_scale)


@PROPERTY
@given(record_sets())
def test_any_records_round_trip_through_format_2_in_model_order(records: list[Record]) -> None:
    model = encode_weights({name: np.zeros(shape) for name, shape in SHAPES.items()})
    layout = read_slots(model)
    order = list(layout)
    payload, length = encode_payload(records, level=1, layout=layout)
    assert decode_payload(payload, length, layout=layout) == sorted(records, key=lambda r: order.index(r.name))


@PROPERTY
@given(st.integers(0, 2**64 - 1))
def test_leb128_round_trips_every_64_bit_number(value: int) -> None:
    data = encode_uvarint(value)
    assert read_uvarint(data, 0, "test") == (value, len(data))


def test_the_readers_dictionary_is_the_one_the_format_pins() -> None:
    assert len(READER_DICTIONARY_BYTES) == 1306
    assert hashlib.sha256(READER_DICTIONARY_BYTES).hexdigest() == (
        "491232eb9ae03639dd82668ecd262f37603abf0a9588d9b873395a85cb9e9ab7"
    )
