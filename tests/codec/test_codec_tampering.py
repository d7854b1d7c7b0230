"""Tampering: an altered manifest or chunk is refused with the specific error, never accepted."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import msgpack
import pytest

from codec import (
    ChunkError,
    FormatError,
    IntegrityError,
    LimitError,
    Manifest,
    Reassembler,
    Release,
    SignatureError,
    SigningKey,
    UnknownKeyError,
    UpdateError,
    VerifyKey,
    read_manifest,
    verify_chunk,
)
from codec.limits import Limits
from codec.manifest import SIGNATURE_DOMAIN


def altered(value: object) -> object:
    """A different value of the same type (so only the signature can catch the change)."""
    if isinstance(value, bool) or value is None:
        raise AssertionError(f"no alteration for {value!r}")
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 + 1.0
    if isinstance(value, bytes):
        return bytes([value[0] ^ 0x01]) + value[1:]
    if value == "delta":
        return "full"
    return value + "x"


def envelope_with(signed: bytes, signature: bytes) -> bytes:
    return msgpack.packb({"signed": signed, "signature": signature})


def split_envelope(envelope: bytes) -> tuple[bytes, bytes]:
    outer = msgpack.unpackb(envelope)
    return outer["signed"], outer["signature"]


@pytest.fixture(scope="module")
def release(build_release: Callable[..., Release]) -> Release:
    """Four chunks of distinct content (the last one short), in format 1, whose keys are the field names."""
    payload = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(25))
    return build_release(payload=payload, chunk_size=256, manifest_format=1)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Manifest)])
def test_changing_any_manifest_field_without_resigning_is_refused(
    release: Release, trusted: dict[str, VerifyKey], field: str
) -> None:
    signed, signature = split_envelope(release.envelope)
    fields = msgpack.unpackb(signed)
    fields[field] = altered(fields[field])
    forged = envelope_with(msgpack.packb(dict(sorted(fields.items()))), signature)
    expected = UnknownKeyError if field == "key_id" else SignatureError
    with pytest.raises(expected) as caught:
        read_manifest(forged, trusted)
    assert type(caught.value) is expected


def test_changing_the_key_id_to_another_trusted_key_is_a_bad_signature(
    release: Release, signing_key: SigningKey, foreign_key: SigningKey
) -> None:
    both = {k.verify_key.key_id: k.verify_key for k in (signing_key, foreign_key)}
    signed, signature = split_envelope(release.envelope)
    fields = msgpack.unpackb(signed)
    fields["key_id"] = foreign_key.verify_key.key_id
    with pytest.raises(SignatureError) as caught:
        read_manifest(envelope_with(msgpack.packb(dict(sorted(fields.items()))), signature), both)
    assert type(caught.value) is SignatureError and caught.value.code == "bad-signature"


def test_reencoding_the_same_fields_non_canonically_breaks_the_signature(
    release: Release, trusted: dict[str, VerifyKey]
) -> None:
    signed, signature = split_envelope(release.envelope)
    fields = msgpack.unpackb(signed)
    reordered = msgpack.packb(dict(sorted(fields.items(), reverse=True)))
    assert reordered != signed and msgpack.unpackb(reordered) == fields
    with pytest.raises(SignatureError) as caught:
        read_manifest(envelope_with(reordered, signature), trusted)
    assert type(caught.value) is SignatureError


def test_a_genuinely_signed_but_non_canonical_manifest_is_refused(
    release: Release, signing_key: SigningKey, trusted: dict[str, VerifyKey]
) -> None:
    fields = msgpack.unpackb(split_envelope(release.envelope)[0])
    reordered = msgpack.packb(dict(sorted(fields.items(), reverse=True)))
    envelope = envelope_with(reordered, signing_key.sign(SIGNATURE_DOMAIN + reordered))
    with pytest.raises(FormatError):
        read_manifest(envelope, trusted)


def test_a_signature_without_the_domain_prefix_is_refused(
    release: Release, signing_key: SigningKey, trusted: dict[str, VerifyKey]
) -> None:
    signed = split_envelope(release.envelope)[0]
    with pytest.raises(SignatureError) as caught:
        read_manifest(envelope_with(signed, signing_key.sign(signed)), trusted)
    assert type(caught.value) is SignatureError


def _regions(envelope: bytes) -> tuple[range, range]:
    signed, signature = split_envelope(envelope)
    start = envelope.index(signed)
    assert envelope.endswith(signature)
    return range(start, start + len(signed)), range(len(envelope) - 64, len(envelope))


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_any_byte_flip_in_the_envelope_is_refused(release: Release, trusted: dict[str, VerifyKey], mask: int) -> None:
    envelope = release.envelope
    signed_region, signature_region = _regions(envelope)
    for position in range(len(envelope)):
        forged = bytearray(envelope)
        forged[position] ^= mask
        with pytest.raises(UpdateError) as caught:
            read_manifest(bytes(forged), trusted)
        kind = type(caught.value)
        if position in signature_region:
            assert kind is SignatureError, position
        elif position in signed_region:
            assert kind in (SignatureError, UnknownKeyError, FormatError), (position, kind)
        else:  # the envelope's own framing: map header, key names, bin headers
            assert kind is FormatError, (position, kind)


def test_an_envelope_over_the_manifest_size_limit_is_refused(release: Release, trusted: dict[str, VerifyKey]) -> None:
    with pytest.raises(LimitError):
        read_manifest(release.envelope, trusted, Limits(max_manifest_bytes=len(release.envelope) - 1))
    limits = Limits(max_manifest_bytes=len(release.envelope))
    assert read_manifest(release.envelope, trusted, limits) == release.manifest


# ---------------------------------------------------------------------------------------------- chunks


def test_changing_any_byte_of_any_chunk_is_refused(release: Release) -> None:
    assert len(release.chunks) == 4
    for index, chunk in enumerate(release.chunks):
        verify_chunk(release.manifest, index, chunk)
        for position in range(len(chunk)):
            forged = bytearray(chunk)
            forged[position] = (forged[position] + 1 + position % 255) % 256
            with pytest.raises(ChunkError):
                verify_chunk(release.manifest, index, bytes(forged))


def test_reassembler_refuses_a_forged_chunk_and_still_reports_it_missing(release: Release) -> None:
    reassembler = Reassembler(release.manifest)
    forged = bytes([release.chunks[1][0] ^ 0xFF]) + release.chunks[1][1:]
    assert forged != release.chunks[1]
    with pytest.raises(ChunkError):
        reassembler.add(1, forged)
    assert reassembler.missing() == [0, 1, 2, 3]
    assert reassembler.add(1, release.chunks[1]) is True
    with pytest.raises(ChunkError):  # a forged copy of a chunk already held is refused too
        reassembler.add(1, forged)
    assert reassembler.missing() == [0, 2, 3]


@pytest.mark.parametrize("index", [0, 3])
def test_a_chunk_of_the_wrong_length_is_refused(release: Release, index: int) -> None:
    chunk = release.chunks[index]
    for wrong in (chunk[:-1], chunk + b"\x00", chunk + chunk, b""):
        with pytest.raises(ChunkError):
            verify_chunk(release.manifest, index, wrong)


@pytest.mark.parametrize("index", [-1, 4, 5, 2**40])
def test_a_chunk_index_outside_the_release_is_refused(release: Release, index: int) -> None:
    with pytest.raises(ChunkError):
        verify_chunk(release.manifest, index, release.chunks[0])
    with pytest.raises(ChunkError):
        Reassembler(release.manifest).add(index, release.chunks[0])


def test_a_genuine_chunk_at_another_index_is_refused(release: Release) -> None:
    for index in (1, 2):
        with pytest.raises(ChunkError):
            verify_chunk(release.manifest, index, release.chunks[0])


def test_reassembled_payload_must_match_the_manifest_payload_hash(release: Release) -> None:
    inconsistent = dataclasses.replace(release.manifest, payload_sha256=hashlib.sha256(b"other").digest())
    reassembler = Reassembler(inconsistent)
    for index, chunk in enumerate(release.chunks):
        reassembler.add(index, chunk)
    with pytest.raises(IntegrityError) as caught:
        reassembler.payload()
    assert type(caught.value) is IntegrityError and caught.value.code == "bad-hash"
