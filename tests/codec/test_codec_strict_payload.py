"""Strict payload decoding: hostile documents and frames are refused with the right codec error.

Documents are built by hand (msgpack headers included) and compressed with codec.payload.compress,
so each test reaches exactly the check it names.
"""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest
import zstandard

from codec import (
    DEFAULT_LIMITS,
    FormatError,
    IntegrityError,
    LimitError,
    NonFiniteError,
    Record,
    decode_payload,
    dense_record,
    encode_payload,
    full_record,
)
from codec.limits import Limits
from codec.payload import compress, encode_document

HEAD = b"\x82\xa6format\x01\xa7records"  # {"format": 1, "records": ...} up to the records array


def decode(document: bytes, limits: Limits = DEFAULT_LIMITS) -> list[Record]:
    """Compress ``document`` as the codec does and decode it with its own length as the declared one."""
    return decode_payload(compress(document, level=1), len(document), limits)


def unsized_frame(document: bytes) -> bytes:
    """A zstd frame whose header does not state the content size (as a streaming compressor writes it)."""
    compressor = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    return compressor.compress(document) + compressor.flush()


def records_document(*records: bytes, count: int | None = None) -> bytes:
    """A payload document with already-encoded record maps and an array header of ``count``."""
    count = len(records) if count is None else count
    header = bytes([0x90 | count]) if count < 16 else b"\xdd" + struct.pack(">I", count)
    return HEAD + header + b"".join(records)


def record_bytes(record: Record) -> bytes:
    return msgpack.packb(record.to_msgpack())


@pytest.fixture(scope="module")
def bias() -> Record:
    return dense_record("bias", np.arange(6, dtype=np.float32))


def test_the_hand_built_document_equals_the_encoder_output(bias: Record) -> None:
    assert records_document(record_bytes(bias)) == encode_document([bias])
    assert decode(records_document(record_bytes(bias))) == [bias]


# ------------------------------------------------------------------------------------- depth and length


@pytest.mark.parametrize("opener", [b"\x91", b"\x81\xa1k"], ids=["arrays", "maps"])
def test_a_deeply_nested_record_is_refused(opener: bytes) -> None:
    with pytest.raises(FormatError):
        decode(records_document(opener * 100_000 + b"\xc0"))


@pytest.mark.parametrize(
    "bomb",
    [b"\xdd\xff\xff\xff\xff", b"\xdc\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xde\x01\x00",
     b"\xc6\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x01"],
    ids=["array32", "array16", "map32", "map16", "bin32", "str32", "ext32"],
)
def test_a_header_declaring_a_huge_length_with_few_bytes_is_refused(bomb: bytes) -> None:
    with pytest.raises(FormatError):
        decode(records_document(bomb + b"\x00" * 16))


def test_a_bin_header_declaring_more_than_a_record_may_hold_stops_at_the_limit() -> None:
    document = records_document(b"\x81\xa4kind\xc6\xff\xff\xff\xff" + bytes(300_000))
    with pytest.raises(LimitError):
        decode(document, Limits(max_record_bytes=1000))


def test_a_record_array_declaring_billions_of_records_is_refused() -> None:
    with pytest.raises(LimitError):
        decode(records_document(count=2**32 - 1))


def test_more_records_than_the_limit_are_refused(bias: Record) -> None:
    records = [record_bytes(dense_record(f"b{i}", np.ones(2))) for i in range(4)]
    assert len(decode(records_document(*records), Limits(max_records=4))) == 4
    with pytest.raises(LimitError):
        decode(records_document(*records), Limits(max_records=3))


@pytest.mark.parametrize("values", [300, 30_000], ids=["several-arrays", "one-large-bin"])
def test_a_record_over_max_record_bytes_is_refused(values: int) -> None:
    record = dense_record("w", np.ones(values), dtype="i8") if values < 1000 else dense_record("w", np.ones(values))
    size = len(record_bytes(record))
    assert decode(records_document(record_bytes(record)), Limits(max_record_bytes=size)) == [record]
    with pytest.raises(LimitError):
        decode(records_document(record_bytes(record)), Limits(max_record_bytes=size - 1))


def test_a_record_larger_than_the_read_buffer_is_refused_as_over_limit() -> None:
    record = dense_record("w", np.ones(100_000))  # 400 kB of float32 values
    with pytest.raises(LimitError):
        decode(records_document(record_bytes(record)), Limits(max_record_bytes=1000))


# ----------------------------------------------------------------------------------- document structure


@pytest.mark.parametrize("version", [0, 2, -1, 2**40, "1", True, 1.0, None, b"\x01"])
def test_an_unknown_payload_format_version_is_refused(bias: Record, version: object) -> None:
    document = msgpack.packb({"format": version, "records": [bias.to_msgpack()]})
    with pytest.raises(FormatError):
        decode(document)


@pytest.mark.parametrize(
    "document",
    [
        {"records": []},
        {"format": 1},
        {"format": 1, "records": [], "extra": 1},
        {"records": [], "format": 1},
        {"format": 1, "record": []},
        [1, []],
        {"format": 1, "records": {}},
        {"format": 1, "records": "none"},
    ],
    ids=["missing-format", "missing-records", "extra-key", "keys-reordered", "misspelt", "array", "map-records",
         "str-records"],
)
def test_a_document_with_unknown_missing_or_reordered_keys_is_refused(document: object) -> None:
    with pytest.raises(FormatError):
        decode(msgpack.packb(document))


def test_an_empty_record_list_decodes_to_no_records() -> None:
    assert decode(records_document()) == []


@pytest.mark.parametrize("record", [b"\xc0", b"\x90", b"\xa5dense", b"\x80", b"\x81\xa4kind\xa4conv"])
def test_a_record_that_is_not_a_known_record_map_is_refused(record: bytes) -> None:
    with pytest.raises(FormatError):
        decode(records_document(record))


def test_a_map_with_non_string_keys_is_refused() -> None:
    with pytest.raises(FormatError):
        decode(records_document(b"\x81\x01\x02"))
    with pytest.raises(FormatError):
        decode(records_document(b"\x81\x91\x01\x02"))


def test_duplicate_record_names_are_refused(bias: Record) -> None:
    with pytest.raises(FormatError):
        decode(records_document(record_bytes(bias), record_bytes(bias)))


def test_a_full_record_must_be_alone(bias: Record) -> None:
    full = record_bytes(full_record(b"model bytes"))
    assert len(decode(records_document(full))) == 1
    for records in ((full, record_bytes(bias)), (record_bytes(bias), full)):
        with pytest.raises(FormatError):
            decode(records_document(*records))


def test_non_finite_values_inside_a_payload_are_refused() -> None:
    document = records_document(record_bytes(dense_record("b", np.array([1.0, np.nan]))))
    with pytest.raises(NonFiniteError) as caught:
        decode(document)
    assert caught.value.code == "non-finite"


# ------------------------------------------------------------------------------- trailing and truncated


@pytest.mark.parametrize(
    "tail", [b"\xc0", b"\x01", msgpack.packb({"format": 1}), b"\xc4", b"\xc4\x05ab", b"\x91", b"\xdd\x00"],
    ids=["nil", "int", "map", "partial-bin-header", "partial-bin", "partial-array", "partial-array-header"],
)
def test_data_after_the_document_is_refused(bias: Record, tail: bytes) -> None:
    with pytest.raises(FormatError):
        decode(encode_document([bias]) + tail)


@pytest.mark.parametrize("tail", [b"\xc0", b"\x91"])
def test_data_after_a_full_record_document_is_refused(tail: bytes) -> None:
    with pytest.raises(FormatError):
        decode(encode_document([full_record(b"model")]) + tail)


def test_bytes_after_the_zstd_frame_are_refused(bias: Record) -> None:
    payload, length = encode_payload([bias], level=1)
    for tail in (b"\x00", b"garbage", payload):
        with pytest.raises((FormatError, LimitError)):
            decode_payload(payload + tail, length)


def test_every_truncation_of_the_document_is_refused(bias: Record) -> None:
    document = encode_document([bias, dense_record("other", np.ones(3), dtype="i4")])
    for cut in range(1, len(document)):
        with pytest.raises(FormatError):
            decode(document[:cut])


def test_every_truncation_of_the_compressed_payload_is_refused(bias: Record) -> None:
    payload, length = encode_payload([bias, dense_record("other", np.ones(300), dtype="i8")], level=19)
    for cut in range(len(payload)):
        with pytest.raises((FormatError, IntegrityError)):
            decode_payload(payload[:cut], length)


# -------------------------------------------------------------------------------------- declared length


def test_a_payload_longer_than_declared_is_refused(bias: Record) -> None:
    payload, length = encode_payload([bias], level=1)
    with pytest.raises(IntegrityError):  # the frame header states its size
        decode_payload(payload, length - 1)
    document = encode_document([bias])
    with pytest.raises(LimitError):  # the frame does not state its size: caught while streaming
        decode_payload(unsized_frame(document + bytes(100_000)), len(document))
    with pytest.raises(LimitError):
        decode_payload(unsized_frame(document), len(document) - 1)


def test_a_payload_shorter_than_declared_is_refused(bias: Record) -> None:
    payload, length = encode_payload([bias], level=1)
    with pytest.raises(IntegrityError):
        decode_payload(payload, length + 1)
    with pytest.raises(IntegrityError):
        decode_payload(unsized_frame(encode_document([bias])), length + 1)
    assert decode_payload(unsized_frame(encode_document([bias])), length) == [bias]


@pytest.mark.parametrize("declared", [0, -1, DEFAULT_LIMITS.max_decompressed_bytes + 1])
def test_a_declared_length_outside_the_limits_is_refused(bias: Record, declared: int) -> None:
    payload, _ = encode_payload([bias], level=1)
    with pytest.raises(LimitError):
        decode_payload(payload, declared)


def test_a_payload_over_the_size_limit_is_refused(bias: Record) -> None:
    payload, length = encode_payload([bias], level=1)
    with pytest.raises(LimitError):
        decode_payload(payload, length, Limits(max_payload_bytes=len(payload) - 1))
    assert decode_payload(payload, length, Limits(max_payload_bytes=len(payload))) == [bias]


@pytest.mark.parametrize("payload", [b"", b"\x28\xb5", encode_document([]), b"\x00" * 64])
def test_bytes_that_are_not_a_zstd_frame_are_refused(payload: bytes) -> None:
    with pytest.raises(FormatError):
        decode_payload(payload, 10)
