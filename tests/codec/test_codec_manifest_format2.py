"""Manifest format 2: short keys, fields left out that the reader restores exactly, strict reading, and
the chunk an envelope carries inline (checked as a chunk on its own topic is)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import msgpack
import pytest

from codec import FormatError, Release, SigningKey, VerifyKey, read_manifest
from codec.errors import ChunkError, IntegrityError, SignatureError
from codec.limits import MAX_INLINE_BYTES
from codec.manifest import (
    SIGNATURE_DOMAIN,
    inline_chunk,
    read_manifest_unverified,
    read_pinned_manifest,
    sign_manifest,
    signed_digest,
)
from codec.manifest_compact import SHORT_KEYS, from_short, to_short
from codec.release_index import IndexEntry


def short_map(release: Release) -> dict:
    return msgpack.unpackb(msgpack.unpackb(release.envelope)["signed"])


def envelope_of(short: dict, key: SigningKey, **extra: object) -> bytes:
    signed = msgpack.packb(dict(sorted(short.items())), use_bin_type=True)
    return msgpack.packb({"signed": signed, "signature": key.sign(SIGNATURE_DOMAIN + signed), **extra})


@pytest.fixture(scope="module")
def chunked(build_release: Callable[..., Release]) -> Release:
    """A format-2 delta of 1000 bytes in 4 chunks (nothing inline)."""
    return build_release(payload=bytes(range(250)) * 4, chunk_size=256)


@pytest.fixture(scope="module")
def small(build_release: Callable[..., Release]) -> Release:
    """A format-2 delta of one chunk, carried inline."""
    return build_release(chunk_size=4096)


# ------------------------------------------------------------------------------------ known answers


def test_format_2_is_the_default_and_signs_the_short_keys_sorted(chunked: Release) -> None:
    signed = msgpack.unpackb(chunked.envelope)["signed"]
    keys = [key for key, _ in msgpack.unpackb(signed, object_pairs_hook=list)]
    assert chunked.manifest.format == 2 and keys == sorted(keys)
    assert set(keys) == {SHORT_KEYS[f.name] for f in dataclasses.fields(chunked.manifest)}
    assert all(len(key) <= 2 for key in keys)


def test_the_short_keys_are_one_or_two_characters_each_field_its_own() -> None:
    assert len(set(SHORT_KEYS.values())) == len(SHORT_KEYS) and all(1 <= len(k) <= 2 for k in SHORT_KEYS.values())
    assert not set(SHORT_KEYS.values()) & set(SHORT_KEYS), "no short key is a format-1 name"


def test_a_format_2_manifest_reads_back_as_the_same_manifest(chunked: Release, trusted: dict[str, VerifyKey]) -> None:
    read = read_manifest(chunked.envelope, trusted)
    assert read == chunked.manifest and read.canonical_bytes() == msgpack.unpackb(chunked.envelope)["signed"]
    assert from_short(to_short(chunked.manifest.signed_fields())) == chunked.manifest.signed_fields()


def test_one_chunk_leaves_out_its_sha256_and_a_full_release_its_base(
    build_release: Callable[..., Release], trusted: dict[str, VerifyKey]
) -> None:
    full = build_release(full=True, base_version=None, base_sha256=None, chunk_size=4096)
    short = short_map(full)
    assert not {"ch", "bv", "bs"} & set(short) and short["ps"] == full.manifest.chunk_sha256
    read = read_manifest(full.envelope, trusted)
    assert read.chunk_sha256 == read.payload_sha256 and read.base_version is None and read.base_sha256 is None


def test_format_2_is_smaller_than_format_1_of_the_same_release(build_release: Callable[..., Release]) -> None:
    one, two = (build_release(chunk_size=4096, manifest_format=f) for f in (1, 2))
    saved = len(msgpack.unpackb(one.envelope)["signed"]) - len(msgpack.unpackb(two.envelope)["signed"])
    names = sum(len(f.name) for f in dataclasses.fields(one.manifest))
    assert saved >= names - 2 * len(SHORT_KEYS) + 32, (len(one.envelope), len(two.envelope))


def test_format_1_is_still_written_on_request_and_read(
    build_release: Callable[..., Release], trusted: dict[str, VerifyKey]
) -> None:
    old = build_release(chunk_size=4096, manifest_format=1)
    assert "format" in short_map(old) and not old.inline and read_manifest(old.envelope, trusted) == old.manifest


# ------------------------------------------------------------------------------------ strict reading


def test_a_valid_short_map_signed_by_hand_is_accepted(chunked: Release, signing_key, trusted) -> None:
    assert read_manifest(envelope_of(short_map(chunked), signing_key), trusted) == chunked.manifest


@pytest.mark.parametrize("change", [
    {"zz": 1}, {"model": "kws-tiny"}, {"format": 2}, {"chunk_sha256": bytes(128)},
], ids=["unknown-short-key", "format-1-name", "format-1-format-key", "format-1-chunk-name"])
def test_a_key_of_no_format_2_field_is_refused(chunked: Release, signing_key, trusted, change: dict) -> None:
    with pytest.raises(FormatError):
        read_manifest(envelope_of({**short_map(chunked), **change}, signing_key), trusted)


@pytest.mark.parametrize("key", sorted(set(SHORT_KEYS.values()) - {"bv", "bs", "ca", "ix", "fl"}))
def test_a_short_map_missing_a_field_is_refused(chunked: Release, signing_key, trusted, key: str) -> None:
    with pytest.raises(FormatError):
        read_manifest(envelope_of({k: v for k, v in short_map(chunked).items() if k != key}, signing_key), trusted)


@pytest.mark.parametrize("change", [
    {"f": 1}, {"f": 3}, {"f": True}, {"v": "5"}, {"v": 5.0}, {"pl": b"1000"}, {"ps": "x" * 32}, {"rp": 50},
    {"rs": b"salt"}, {"ki": 5}, {"bv": None}, {"bs": None}, {"t": None}, {"ch": bytes(96)}, {"k": "patch"},
    {"fl": None},
], ids=["format-1", "format-3", "format-bool", "version-str", "version-float", "length-bytes", "hash-str",
        "percent-int", "salt-bytes", "key-id-int", "nil-base-version", "nil-base", "nil-target", "chunk-hashes-short",
        "kind-unknown", "nil-fleet"])
def test_a_short_map_with_a_wrong_type_or_value_is_refused(chunked: Release, signing_key, trusted, change) -> None:
    with pytest.raises(FormatError):
        read_manifest(envelope_of({**short_map(chunked), **change}, signing_key), trusted)


def test_one_chunk_with_its_sha256_written_is_refused(small: Release, signing_key, trusted) -> None:
    short = short_map(small)
    with pytest.raises(FormatError, match="leaves chunk_sha256 out"):
        read_manifest(envelope_of({**short, "ch": short["ps"]}, signing_key), trusted)


def test_a_duplicate_key_is_refused(chunked: Release, signing_key, trusted) -> None:
    short = short_map(chunked)
    body = b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in sorted(short.items()))
    signed = bytes([0xDE]) + (len(short) + 1).to_bytes(2, "big") + body + msgpack.packb("v") + msgpack.packb(6)
    envelope = msgpack.packb({"signed": signed, "signature": signing_key.sign(SIGNATURE_DOMAIN + signed)})
    with pytest.raises(FormatError):
        read_manifest(envelope, trusted)


def test_changing_any_short_field_without_resigning_is_refused(chunked: Release, trusted) -> None:
    outer = msgpack.unpackb(chunked.envelope)
    for key, value in short_map(chunked).items():
        altered = value + 1 if type(value) is int else value / 2 + 1 if type(value) is float else \
            value[:-1] + bytes([value[-1] ^ 1]) if type(value) is bytes else value + "x"
        if key in ("f", "ki", "k"):
            continue
        signed = msgpack.packb(dict(sorted({**short_map(chunked), key: altered}.items())), use_bin_type=True)
        with pytest.raises(SignatureError):
            read_manifest(msgpack.packb({**outer, "signed": signed}), trusted)


def test_a_single_chunk_manifest_whose_chunk_hash_is_not_the_payloads_is_not_signed(small: Release,
                                                                                   signing_key) -> None:
    manifest = dataclasses.replace(small.manifest, chunk_sha256=hashlib.sha256(b"other").digest())
    with pytest.raises(FormatError):
        sign_manifest(manifest, signing_key)


# ------------------------------------------------------------------------------------ inline chunks


def test_a_small_payload_travels_inline(small: Release, trusted: dict[str, VerifyKey]) -> None:
    assert small.inline and small.sent_chunks == [] and inline_chunk(small.envelope) == small.chunks[0]
    assert read_manifest(small.envelope, trusted) == small.manifest
    assert signed_digest(small.envelope) == hashlib.sha256(msgpack.unpackb(small.envelope)["signed"]).digest()


def test_only_one_chunk_of_at_most_the_limit_travels_inline(build_release: Callable[..., Release]) -> None:
    assert not build_release(payload=bytes(1000), chunk_size=256).inline, "more than one chunk"
    big = build_release(payload=bytes(range(256)) * (MAX_INLINE_BYTES // 256 + 1), chunk_size=8192)
    assert big.manifest.chunk_count == 1 and not big.inline and big.sent_chunks == big.chunks


def test_an_envelope_stripped_of_its_inline_chunk_is_refused(small: Release, trusted: dict[str, VerifyKey]) -> None:
    """The chunk is on no topic, so an envelope without it could only strand a device: refused as it comes."""
    outer = msgpack.unpackb(small.envelope)
    del outer["inline"]
    with pytest.raises(FormatError, match="stripped"):
        read_manifest(msgpack.packb(outer), trusted)


@pytest.mark.parametrize("corrupt", ["flip", "short", "long", "text"])
def test_a_wrong_inline_chunk_is_refused_by_every_reader(small: Release, trusted, corrupt: str) -> None:
    outer = msgpack.unpackb(small.envelope)
    chunk = outer["inline"]
    outer["inline"] = {"flip": bytes([chunk[0] ^ 1]) + chunk[1:], "short": chunk[:-1], "long": chunk + b"\x00",
                       "text": chunk.hex()}[corrupt]
    expected = ChunkError if corrupt == "flip" else FormatError
    tampered = msgpack.packb(outer)
    for read in (lambda: read_manifest(tampered, trusted), lambda: read_manifest_unverified(tampered)):
        with pytest.raises(expected) as caught:
            read()
        assert caught.value.code == ("bad-chunk" if corrupt == "flip" else "bad-format")


def test_inline_is_refused_in_format_1_and_with_more_than_one_chunk(
    build_release: Callable[..., Release], signing_key, trusted
) -> None:
    old = build_release(chunk_size=4096, manifest_format=1)
    chunked = build_release(payload=bytes(1000), chunk_size=256)
    for release in (old, chunked):
        envelope = msgpack.packb({**msgpack.unpackb(release.envelope), "inline": b"".join(release.chunks)})
        with pytest.raises(FormatError):
            read_manifest(envelope, trusted)
        with pytest.raises(FormatError):
            sign_manifest(release.manifest, signing_key, inline=b"".join(release.chunks))


def test_a_pinned_manifest_with_its_chunk_inline_is_pinned_with_it(small: Release) -> None:
    m = small.manifest
    entry = IndexEntry(m.version, m.payload_kind, m.base_sha256, m.target_sha256, m.payload_length,
                       hashlib.sha256(small.envelope).digest())
    assert read_pinned_manifest(small.envelope, entry, m.model) == m
    outer = msgpack.unpackb(small.envelope)
    other = msgpack.packb({**outer, "inline": bytes(len(outer["inline"]))})
    with pytest.raises(IntegrityError) as caught:
        read_pinned_manifest(other, entry, m.model)
    assert caught.value.code == "bad-hash", "the pin covers the chunk inline"
