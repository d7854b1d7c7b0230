"""Strict manifest reading: a malformed envelope is refused, and so is a genuinely signed manifest whose
fields break the spec (the publisher's key does not make bad fields acceptable)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import msgpack
import pytest

from codec import FormatError, LimitError, Release, SigningKey, VerifyKey, read_manifest
from codec.limits import Limits
from codec.manifest import SIGNATURE_DOMAIN, read_manifest_unverified


@pytest.fixture(scope="module")
def fields(build_release: Callable[..., Release]) -> dict:
    """The fields of a valid format-1 delta manifest (keys are the field names): 1000 payload bytes in 4 chunks
    of 256 (format 2: tests/codec/test_codec_manifest_format2.py)."""
    return dataclasses.asdict(build_release(payload=bytes(1000), chunk_size=256, manifest_format=1).manifest)


def signed_envelope(signed: bytes, key: SigningKey) -> bytes:
    return msgpack.packb({"signed": signed, "signature": key.sign(SIGNATURE_DOMAIN + signed)})


def canonical(values: dict) -> bytes:
    return msgpack.packb(dict(sorted(values.items())), use_bin_type=True)


def test_the_reference_fields_are_valid(fields: dict, signing_key: SigningKey, trusted: dict[str, VerifyKey]) -> None:
    assert dataclasses.asdict(read_manifest(signed_envelope(canonical(fields), signing_key), trusted)) == fields


def test_a_fleet_is_signed_and_a_manifest_without_one_keeps_its_bytes(
    fields: dict, signing_key: SigningKey, trusted: dict[str, VerifyKey]
) -> None:
    plain = read_manifest(signed_envelope(canonical(fields), signing_key), trusted)
    assert plain.fleet is None and "fleet" not in plain.signed_fields()
    named = read_manifest(signed_envelope(canonical({**fields, "fleet": "production"}), signing_key), trusted)
    assert named.fleet == "production" and named != plain
    assert named.canonical_bytes() == canonical({**fields, "fleet": "production"})
    assert dataclasses.replace(named, fleet=None) == plain


# ---------------------------------------------------------------------------------------------- envelope


@pytest.mark.parametrize(
    "envelope",
    [b"", b"\xc1", msgpack.packb([b"a", b"b"]), msgpack.packb({"signed": b"x"}),
     msgpack.packb({"signed": b"x", "signature": bytes(64), "extra": 1}),
     msgpack.packb({"signed": "text", "signature": bytes(64)}),
     msgpack.packb({"signed": msgpack.packb({"key_id": "k"}), "signature": bytes(63)}),
     msgpack.packb({"signed": msgpack.packb({"key_id": "k"}), "signature": bytes(65)}),
     msgpack.packb({"signed": msgpack.packb([1]), "signature": bytes(64)}),
     msgpack.packb({"signed": msgpack.packb({"key_id": 5}), "signature": bytes(64)}),
     msgpack.packb({"signed": msgpack.packb({"version": 1}), "signature": bytes(64)}),
     b"\x91" * 100_000, b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff\x00",
     b"\xdb\xff\xff\xff\xff\x00", b"\xc7\x05\x01abcde"],
    ids=["empty", "reserved-byte", "array", "missing-signature", "extra-key", "str-signed", "short-signature",
         "long-signature", "signed-not-a-map", "int-key-id", "no-key-id", "depth-bomb", "array-bomb", "map-bomb",
         "bin-bomb", "str-bomb", "ext"],
)
def test_a_malformed_envelope_is_refused_before_any_key_lookup(envelope: bytes, trusted: dict[str, VerifyKey]) -> None:
    with pytest.raises(FormatError):
        read_manifest(envelope, trusted)
    with pytest.raises(FormatError):
        read_manifest_unverified(envelope)


def test_data_after_the_envelope_is_refused(
    build_release: Callable[..., Release], trusted: dict[str, VerifyKey]
) -> None:
    envelope = build_release().envelope
    for tail in (b"\xc0", b"\x00", envelope):
        with pytest.raises(FormatError):
            read_manifest(envelope + tail, trusted)


def test_data_after_the_signed_document_is_refused_even_when_signed(
    fields: dict, signing_key: SigningKey, trusted: dict[str, VerifyKey]
) -> None:
    with pytest.raises(FormatError):
        read_manifest(signed_envelope(canonical(fields) + b"\xc0", signing_key), trusted)


# ------------------------------------------------------------------------------- signed but not valid


FORMAT_ERRORS: dict[str, dict] = {
    "format-2": {"format": 2}, "format-0": {"format": 0}, "format-true": {"format": True},
    "format-str": {"format": "1"}, "version-0": {"version": 0}, "version-negative": {"version": -1},
    "version-float": {"version": 5.0}, "version-bool": {"version": True},
    "base-negative": {"base_version": -1}, "model-slash": {"model": "kws/tiny"}, "model-empty": {"model": ""},
    "model-long": {"model": "m" * 65}, "kind-unknown": {"payload_kind": "patch"},
    "delta-without-base": {"base_sha256": None}, "delta-without-base-version": {"base_version": None},
    "short-target": {"target_sha256": bytes(31)}, "long-payload-hash": {"payload_sha256": bytes(33)},
    "str-hash": {"base_sha256": "0" * 32}, "nil-target": {"target_sha256": None},
    "chunk-hashes-missing": {"chunk_sha256": bytes(96)}, "chunk-hashes-extra": {"chunk_sha256": bytes(160)},
    "chunk-hashes-ragged": {"chunk_sha256": bytes(129)}, "chunk-size-small": {"chunk_size": 255},
    "chunk-size-large": {"chunk_size": 128 * 1024 + 1}, "expires-at-creation": {"expires": "created"},
    "expires-before": {"expires": 0}, "percent-negative": {"rollout_percent": -0.5},
    "percent-over": {"rollout_percent": 100.5}, "percent-nan": {"rollout_percent": float("nan")},
    "percent-inf": {"rollout_percent": float("inf")}, "percent-int": {"rollout_percent": 50},
    "salt-long": {"rollout_salt": "s" * 65}, "salt-bytes": {"rollout_salt": b"salt"},
    "created-negative": {"created": -1}, "fleet-slash": {"fleet": "prod/eu"}, "fleet-empty": {"fleet": ""},
    "fleet-nil": {"fleet": None}, "fleet-bytes": {"fleet": b"prod"}, "fleet-long": {"fleet": "f" * 65},
}


@pytest.mark.parametrize("case", list(FORMAT_ERRORS))
def test_a_signed_manifest_with_an_invalid_field_is_refused(
    fields: dict, signing_key: SigningKey, trusted: dict[str, VerifyKey], case: str
) -> None:
    changed = {**fields, **FORMAT_ERRORS[case]}
    if changed["expires"] == "created":
        changed["expires"] = changed["created"]
    with pytest.raises(FormatError):
        read_manifest(signed_envelope(canonical(changed), signing_key), trusted)


@pytest.mark.parametrize("field", ["format", "model", "version", "target_sha256", "chunk_sha256", "rollout_salt"])
def test_a_signed_manifest_missing_a_field_is_refused(
    fields: dict, signing_key: SigningKey, trusted: dict[str, VerifyKey], field: str
) -> None:
    missing = {name: value for name, value in fields.items() if name != field}
    with pytest.raises(FormatError):
        read_manifest(signed_envelope(canonical(missing), signing_key), trusted)


@pytest.mark.parametrize("extra", [{"comment": "hi"}, {"priority": 1}, {"signature": b"x"}])
def test_a_signed_manifest_with_an_unknown_field_is_refused(
    fields: dict, signing_key: SigningKey, trusted: dict[str, VerifyKey], extra: dict
) -> None:
    with pytest.raises(FormatError):
        read_manifest(signed_envelope(canonical({**fields, **extra}), signing_key), trusted)


@pytest.mark.parametrize(
    ("changes", "limits"),
    [({"payload_length": 0, "chunk_sha256": b""}, Limits()),
     ({"decompressed_length": 0}, Limits()),
     ({"decompressed_length": 513 * 1024 * 1024}, Limits()),
     ({}, Limits(max_chunks=3)),
     ({}, Limits(max_payload_bytes=999)),
     ({}, Limits(max_decompressed_bytes=1))],
    ids=["empty-payload", "zero-decompressed", "decompressed-over", "too-many-chunks", "payload-over",
         "decompressed-over-custom"],
)
def test_a_signed_manifest_over_the_limits_is_refused(
    fields: dict, signing_key: SigningKey, trusted: dict[str, VerifyKey], changes: dict, limits: Limits
) -> None:
    envelope = signed_envelope(canonical({**fields, **changes}), signing_key)
    with pytest.raises(LimitError):
        read_manifest(envelope, trusted, limits)
