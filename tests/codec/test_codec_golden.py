"""Golden bytes: fixed inputs must encode to fixed, canonical bytes (like safetensors' format tests).

Only uncompressed bytes are pinned (zstd output may change between library versions). The pinned
digests were computed once and hard-coded; the layout checks below decode the same bytes by hand, so
a pinned value cannot silently encode a wrong layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import msgpack
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from codec import Manifest, SigningKey, read_manifest
from codec.arrays import WireArray, pack
from codec.manifest import SIGNATURE_DOMAIN, sign_manifest
from codec.payload import encode_document
from codec.records import DenseRecord, FullRecord, LowRankRecord, Record, SparseRecord

DOCUMENT_SHA256 = "1a1876fe6b7bdf3bcaeb40714525daeb54c5a36b6e573c1c3763176dff8c758c"
DOCUMENT_LENGTH = 554
ENVELOPE_SHA256 = "e280f7bf38b2a32393ccfe20ebad36ee2afc3a2654997c3876f29f7b2644eddd"
SIGNED_SHA256 = "5369bd499219dbd2ba9e821b672aead9a93e592d1d11cd389166533cb1ae83d8"
ENVELOPE_LENGTH = 591
KEY_ID = "56475aa75463474c"


def f32(values: list[float]) -> WireArray:
    return pack(np.array(values, np.float32), "f32")


def golden_records() -> list[Record]:
    return [
        LowRankRecord("layer1.weight", (2, 3), pack(np.array([[1], [-2]], np.int8), "i8"), f32([0.5, 0.25]),
                      pack(np.array([[3, -4, 5]], np.int8), "i8"), f32([1.0, 2.0, 0.125])),
        DenseRecord("layer1.bias", "add", f32([0.5, -1.5])),
        DenseRecord("layer2.bias", "set", pack(np.array([1, -7, 7], np.int8), "i4"), f32([0.25])),
        SparseRecord("layer2.weight", (2, 2), "add", pack(np.array([1, 2], np.uint32), "u32"),
                     pack(np.array([1, -1], np.int8), "b1"), f32([0.5])),
    ]


def golden_key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def golden_manifest() -> Manifest:
    def digest(label: bytes) -> bytes:
        return hashlib.sha256(label).digest()

    return Manifest(
        model="kws-tiny", version=7, payload_kind="delta", base_version=6, base_sha256=digest(b"base"),
        target_sha256=digest(b"target"), payload_length=1000, payload_sha256=digest(b"payload"),
        decompressed_length=4000, chunk_size=256, chunk_sha256=b"".join(digest(b"chunk%d" % i) for i in range(4)),
        created=1_700_000_000, expires=1_700_086_400, rollout_percent=25.0, rollout_salt="golden", key_id=KEY_ID,
    )


# -------------------------------------------------------------------------------------------- payload


def test_a_single_record_document_has_exactly_the_specified_bytes() -> None:
    expected = (
        b"\x82"                                   # map of 2
        b"\xa6format" b"\x01"                     # "format": 1
        b"\xa7records" b"\x91"                    # "records": array of 1
        b"\x84"                                   # record: map of 4, keys in this order
        b"\xa4kind" b"\xa5dense"
        b"\xa4name" b"\xa1b"
        b"\xa4mode" b"\xa3add"
        b"\xa6values" b"\x83"                     # array: map of 3
        b"\xa5dtype" b"\xa3f32"
        b"\xa5shape" b"\x91\x01"                  # [1]
        b"\xa4data" b"\xc4\x04" b"\x00\x00\x80\x3f"  # bin 8 of 4 bytes: 1.0 as little-endian binary32
    )
    assert encode_document([DenseRecord("b", "add", f32([1.0]))]) == expected


def test_a_full_record_document_has_exactly_the_specified_bytes() -> None:
    expected = (
        b"\x82\xa6format\x01\xa7records\x91"
        b"\x83\xa4kind\xa4full\xa4name\xa5model\xa4data\xc4\x0fRCW1 whole file"
    )
    assert encode_document([FullRecord("model", b"RCW1 whole file")]) == expected


def test_the_golden_records_encode_to_the_pinned_document() -> None:
    document = encode_document(golden_records())
    assert len(document) == DOCUMENT_LENGTH
    assert hashlib.sha256(document).hexdigest() == DOCUMENT_SHA256


def _pairs(document: bytes) -> list:
    """The document decoded with maps as ordered (key, value) lists."""
    return msgpack.unpackb(document, object_pairs_hook=list, raw=False)


def test_the_golden_document_follows_the_record_layout() -> None:
    document = encode_document(golden_records())
    top = _pairs(document)
    assert [key for key, _ in top] == ["format", "records"] and top[0][1] == 1
    records = top[1][1]
    orders = [[key for key, _ in record] for record in records]
    assert orders == [
        ["kind", "name", "shape", "u", "u_scale", "v", "v_scale"],
        ["kind", "name", "mode", "values"],
        ["kind", "name", "mode", "values", "scale"],
        ["kind", "name", "shape", "mode", "gaps", "values", "scale"],
    ]
    for record in records:
        for key, value in record:
            if isinstance(value, list) and value and isinstance(value[0], tuple):  # an array map
                assert [k for k, _ in value] == ["dtype", "shape", "data"]
                assert isinstance(value[2][1], bytes) and all(type(d) is int for d in value[1][1])
            elif key == "shape":
                assert all(type(d) is int for d in value)
            else:
                assert isinstance(value, str)
    lowrank = dict(records[0])
    assert dict(lowrank["u"])["data"] == b"\x01\xfe"                      # i8 codes 1, -2
    assert dict(lowrank["v_scale"])["data"] == struct.pack("<3f", 1.0, 2.0, 0.125)
    assert dict(dict(records[2])["values"])["data"] == b"\x91\x07"          # i4: 1, -7 | 7, padding 0
    assert dict(dict(records[3])["gaps"])["data"] == struct.pack("<2I", 1, 2)
    assert dict(dict(records[3])["values"])["data"] == b"\x01"             # b1: +1, -1, LSB first


# ------------------------------------------------------------------------------------------- manifest


def test_the_golden_key_has_the_pinned_id() -> None:
    public = golden_key().verify_key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert golden_key().verify_key.key_id == KEY_ID == hashlib.sha256(public).hexdigest()[:16]


def test_the_golden_manifest_signs_to_the_pinned_envelope() -> None:
    envelope = sign_manifest(golden_manifest(), golden_key())
    assert envelope == sign_manifest(golden_manifest(), golden_key())  # Ed25519 is deterministic
    assert len(envelope) == ENVELOPE_LENGTH
    assert hashlib.sha256(golden_manifest().canonical_bytes()).hexdigest() == SIGNED_SHA256
    assert hashlib.sha256(envelope).hexdigest() == ENVELOPE_SHA256
    key = golden_key().verify_key
    assert read_manifest(envelope, {key.key_id: key}) == golden_manifest()


def test_the_golden_envelope_follows_the_layout() -> None:
    envelope = sign_manifest(golden_manifest(), golden_key())
    signed = golden_manifest().canonical_bytes()
    signature = golden_key().sign(SIGNATURE_DOMAIN + signed)
    assert envelope == (
        b"\x82" + b"\xa6signed" + b"\xc5" + struct.pack(">H", len(signed)) + signed
        + b"\xa9signature" + b"\xc4\x40" + signature
    )
    key = golden_key().verify_key
    key.verify(signature, SIGNATURE_DOMAIN + signed)


def _expected_fields() -> list[tuple[str, bytes]]:
    """(key, the value's raw msgpack bytes) in the order the canonical encoding must use: keys sorted."""

    def digest(label: bytes) -> bytes:
        return b"\xc4\x20" + hashlib.sha256(label).digest()

    chunks = b"".join(hashlib.sha256(b"chunk%d" % i).digest() for i in range(4))
    return [
        ("base_sha256", digest(b"base")),
        ("base_version", b"\x06"),                                  # positive fixint
        ("chunk_sha256", b"\xc4\x80" + chunks),                     # bin 8 of 128 bytes
        ("chunk_size", b"\xcd\x01\x00"),                            # uint 16
        ("created", b"\xce" + struct.pack(">I", 1_700_000_000)),    # uint 32
        ("decompressed_length", b"\xcd\x0f\xa0"),
        ("expires", b"\xce" + struct.pack(">I", 1_700_086_400)),
        ("format", b"\x01"),
        ("key_id", b"\xb0" + KEY_ID.encode()),                       # fixstr of 16
        ("model", b"\xa8kws-tiny"),
        ("payload_kind", b"\xa5delta"),
        ("payload_length", b"\xcd\x03\xe8"),
        ("payload_sha256", digest(b"payload")),
        ("rollout_percent", b"\xcb" + struct.pack(">d", 25.0)),     # always float 64
        ("rollout_salt", b"\xa6golden"),
        ("target_sha256", digest(b"target")),
        ("version", b"\x07"),
    ]


def test_the_signed_manifest_is_the_canonical_sorted_map() -> None:
    expected = b"\xde\x00\x11"  # map 16 of 17 entries
    for key, value in _expected_fields():
        expected += bytes([0xA0 | len(key)]) + key.encode() + value
    assert golden_manifest().canonical_bytes() == expected


@pytest.mark.parametrize(
    ("field", "value", "raw"),
    [("base_version", None, b"\xc0"), ("rollout_percent", 100.0, b"\xcb" + struct.pack(">d", 100.0)),
     ("version", 2**40, b"\xcf" + struct.pack(">Q", 2**40))],
)
def test_canonical_encoding_of_nil_floats_and_large_integers(field: str, value: object, raw: bytes) -> None:
    manifest = dataclasses.replace(golden_manifest(), **{field: value})
    assert bytes([0xA0 | len(field)]) + field.encode() + raw in manifest.canonical_bytes()
