"""The signed release manifest: fields, canonical encoding, signing, and verification in a fixed order.

The envelope is the msgpack map {"signed": bin, "signature": bin}, with {"cosignatures": {key id: bin}}
when a trust root asks for more than one release key (codec.root), and {"inline": bin} when a format-2
release carries its one small chunk (unsigned: the chunk's sha256 is signed, and checked on reading).
``signed`` is the canonical msgpack encoding of the manifest fields (format 1: under their names; format
2: under short keys, codec.manifest_compact); every Ed25519 signature covers ``SIGNATURE_DOMAIN + signed``.
Verification parses the envelope, finds the key by id, checks the signature, and only then trusts the
fields; then that the key may sign for the model and the threshold (codec.keys.ReleaseKeys). Policy
checks (version, base, expiry) need the device's own state: codec.release_policy.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, asdict, dataclass, field, fields

import msgpack

from codec.canary import Canary, read_canary
from codec.errors import (
    FormatError,
    IntegrityError,
    KeyNotAllowedError,
    LimitError,
    RevokedKeyError,
    SignatureError,
    ThresholdError,
    UnknownKeyError,
    UpdateError,
)
from codec.keys import ReleaseKeys, SigningKey, VerifyKey
from codec.limits import DEFAULT_LIMITS, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, Limits
from codec.manifest_compact import check_inline as _check_inline
from codec.manifest_compact import named_fields, to_short
from codec.release_index import IndexEntry, index_to_msgpack, read_index

#: The formats readers accept; writers (codec.release.make_release) write DEFAULT_MANIFEST_FORMAT, and format
#: 1 on request, for fleets whose devices predate format 2. A Manifest built by hand is format 1.
MANIFEST_FORMATS = (1, 2)
DEFAULT_MANIFEST_FORMAT = 2
SIGNATURE_DOMAIN = b"rankcast-manifest-v1\x00"
PAYLOAD_KINDS = ("delta", "full")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_UINT64_MAX = 2**64 - 1
#: The most signatures besides the named key's that a manifest envelope carries.
MAX_COSIGNATURES = 8


def validate_id(value: object, what: str = "id") -> str:
    """Model and device ids are one MQTT topic level: 1-64 of A-Z a-z 0-9 . _ - (no + # /)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise FormatError(
            f"{what} {value!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit (no '/', '+' or '#')"
        )
    return value


@dataclass(frozen=True, eq=False)
class Manifest:
    """Everything a device needs to decide on, fetch, check and apply one release.

    ``canary``, ``index`` (codec.release_index: the older releases a device can catch up through) and
    ``fleet`` (the namespace of devices the release is for: a device configured for another fleet refuses
    it, so a key that signs for staging and production cannot have one's releases replayed on the other)
    are optional and signed like every field, but kept beside the dataclass fields: when one is None the
    canonical encoding has no key for it at all, so manifests without them keep their exact bytes and
    ``dataclasses.asdict`` keeps its 17 keys (``signed_fields`` adds them). Equality, hashing and
    ``dataclasses.replace`` include them.
    """

    model: str
    version: int
    payload_kind: str
    base_version: int | None
    base_sha256: bytes | None
    target_sha256: bytes
    payload_length: int
    payload_sha256: bytes
    decompressed_length: int
    chunk_size: int
    chunk_sha256: bytes
    created: int
    expires: int
    rollout_percent: float
    rollout_salt: str
    key_id: str
    format: int = field(default=1)
    canary: InitVar[Canary | None] = None
    index: InitVar[tuple[IndexEntry, ...] | None] = None
    fleet: InitVar[str | None] = None

    def __post_init__(self, canary: Canary | None, index: tuple[IndexEntry, ...] | None, fleet: str | None) -> None:
        object.__setattr__(self, "canary", canary)
        object.__setattr__(self, "index", None if index is None else tuple(index))
        object.__setattr__(self, "fleet", fleet)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Manifest):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def _values(self) -> tuple:
        return (*(getattr(self, f.name) for f in fields(self)), self.canary, self.index, self.fleet)

    def signed_fields(self) -> dict:
        """The map that is signed: the fields, plus ``canary``, ``index`` and ``fleet`` only when set."""
        values = asdict(self)
        if self.fleet is not None:
            values["fleet"] = self.fleet
        if self.canary is not None:
            values["canary"] = self.canary.to_msgpack()
        if self.index is not None:
            values["index"] = index_to_msgpack(self.index)
        return values

    @property
    def release_key(self) -> tuple[int, str]:
        """(version, payload_kind): what names this release's topics."""
        return self.version, self.payload_kind

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_sha256) // 32

    def chunk_digest(self, index: int) -> bytes:
        return self.chunk_sha256[32 * index : 32 * (index + 1)]

    def chunk_length(self, index: int) -> int:
        """Exact length of chunk ``index``: chunk_size, except a shorter last chunk."""
        if index < self.chunk_count - 1:
            return self.chunk_size
        return self.payload_length - self.chunk_size * (self.chunk_count - 1)

    def canonical_bytes(self) -> bytes:
        """The signed encoding: a msgpack map with keys sorted, floats as float64 (format 2: short keys)."""
        values = self.signed_fields() if self.format == 1 else to_short(self.signed_fields())
        return msgpack.packb(dict(sorted(values.items())), use_bin_type=True)

    def in_rollout(self, device_id: str) -> bool:
        """Whether ``device_id`` falls in this release's cohort (stable per salt, uniform over ids)."""
        digest = hashlib.sha256(f"{self.rollout_salt}\x00{device_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 * 100 < self.rollout_percent


def sign_manifest(manifest: Manifest, key: SigningKey, cosigners: Sequence[SigningKey] = (),
                  inline: bytes | None = None) -> bytes:
    """The envelope bytes that travel: the canonical manifest, its signature by the key it names, the
    signatures of ``cosigners`` (for a trust root whose release threshold is above 1), and ``inline``, the
    payload of a format-2 release of one chunk of at most MAX_INLINE_BYTES (checked like a chunk)."""
    if manifest.key_id != key.verify_key.key_id:
        raise FormatError(f"manifest names key {manifest.key_id} but is signed with {key.verify_key.key_id}")
    others = {signer.verify_key.key_id: signer for signer in cosigners}
    if manifest.key_id in others or len(others) != len(cosigners) or len(others) > MAX_COSIGNATURES:
        raise FormatError(f"cosigners must be up to {MAX_COSIGNATURES} distinct keys other than the signing key")
    _validate_fields(manifest.signed_fields(), DEFAULT_LIMITS)
    signed = manifest.canonical_bytes()
    outer: dict = {"signed": signed, "signature": key.sign(SIGNATURE_DOMAIN + signed)}
    if others:
        outer["cosignatures"] = {kid: signer.sign(SIGNATURE_DOMAIN + signed) for kid, signer in sorted(others.items())}
    if inline is not None:
        _check_inline(manifest, inline)
        outer["inline"] = inline
    envelope = msgpack.packb(outer)
    if len(envelope) > DEFAULT_LIMITS.max_manifest_bytes:
        raise LimitError(
            f"the manifest would be {len(envelope)} bytes; devices refuse more than "
            f"{DEFAULT_LIMITS.max_manifest_bytes} (use a larger chunk size or a smaller canary)"
        )
    return envelope


def read_manifest(
    envelope: bytes, trusted_keys: ReleaseKeys | Mapping[str, VerifyKey], limits: Limits = DEFAULT_LIMITS
) -> Manifest:
    """Parse and verify an envelope: the named key's signature, then the fields, then that the key may sign
    for the model and that enough trusted keys signed; raises FormatError, LimitError or a SignatureError."""
    trust = ReleaseKeys.of(trusted_keys)
    signed, signature, cosignatures, fields, inline = _parse_envelope(envelope, limits)
    key = trust.keys.get(fields["key_id"])
    if key is None:
        raise _untrusted(fields["key_id"], trust)
    key.verify(signature, SIGNATURE_DOMAIN + signed)
    manifest = _to_manifest(fields, signed, limits)
    if not trust.may_sign(key.key_id, manifest.model):
        raise KeyNotAllowedError(f"key {key.key_id} may not sign releases of model {manifest.model!r} under "
                                 f"{trust.source}; sign with a key it lists for this model")
    signers = {key.key_id} | {
        kid for kid, cosignature in cosignatures.items()
        if trust.may_sign(kid, manifest.model) and trust.keys[kid].signs(cosignature, SIGNATURE_DOMAIN + signed)
    }
    if len(signers) < trust.threshold:
        raise ThresholdError(f"release {manifest.version} is signed by {len(signers)} trusted key(s); {trust.source} "
                             f"asks for {trust.threshold} (publish with more --key options)")
    _check_inline(manifest, inline)
    return manifest


def _untrusted(key_id: str, trust: ReleaseKeys) -> SignatureError:
    if key_id in trust.revoked:
        return RevokedKeyError(f"the manifest is signed by key {key_id!r}, which {trust.source} revoked; the "
                               "device takes only releases signed by the keys the root lists")
    if trust.source == "trusted_keys":
        return UnknownKeyError(f"the manifest is signed by key {key_id!r}, which this device does not trust; "
                               "add its .pub to trusted_keys if the release is genuine")
    return UnknownKeyError(f"the manifest is signed by key {key_id!r}, which {trust.source} does not list; add it "
                           "with `rankcast trust add-key` and publish the new root if the release is genuine")


def signed_digest(envelope: bytes, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """A manifest's identity: the sha256 of its signed part (the same release however the envelope around
    it is encoded); raises FormatError or LimitError for an envelope that is not one."""
    if len(envelope) > limits.max_manifest_bytes:
        raise LimitError(f"manifest of {len(envelope)} bytes exceeds the limit of {limits.max_manifest_bytes}")
    outer = _unpack(envelope, limits, "manifest envelope")
    if not isinstance(outer, dict) or set(outer) - _ENVELOPE_OPTIONAL != {"signed", "signature"} or not isinstance(
            outer["signed"], bytes):
        raise FormatError(_ENVELOPE)
    return hashlib.sha256(outer["signed"]).digest()


def inline_chunk(envelope: bytes) -> bytes | None:
    """The chunk an envelope carries inline (None: its chunks travel on their own topics); for an envelope
    a reader of this module accepted, which checked that chunk against the manifest."""
    return msgpack.unpackb(envelope, raw=False).get("inline")


def read_manifest_unverified(envelope: bytes, limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """Parse an envelope WITHOUT checking its signature: for inspection tools, never for applying."""
    signed, _, _, fields, inline = _parse_envelope(envelope, limits)
    manifest = _to_manifest(fields, signed, limits)
    _check_inline(manifest, inline)
    return manifest


def read_pinned_manifest(envelope: bytes, entry: IndexEntry, model: str, limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """An older release's manifest, trusted because a verified manifest's index pins its sha256 (its own
    signature and expiry are not what vouches for it); checked to be the release the entry describes."""
    if hashlib.sha256(envelope).digest() != entry.manifest_sha256:
        raise IntegrityError(f"the retained manifest of release {entry.version} ({entry.kind}) is not the one "
                             "the latest manifest's index pins; publish the releases again")
    signed, _, _, fields, inline = _parse_envelope(envelope, limits)
    manifest = _to_manifest(fields, signed, limits)
    _check_inline(manifest, inline)
    described = (manifest.model, manifest.version, manifest.payload_kind, manifest.base_sha256,
                 manifest.target_sha256, manifest.payload_length)
    if described != (model, entry.version, entry.kind, entry.base_sha256, entry.target_sha256, entry.payload_length):
        raise FormatError(f"release {entry.version}'s manifest differs from its entry in the index")
    return manifest


def _parse_envelope(envelope: bytes, limits: Limits) -> tuple[bytes, bytes, dict[str, bytes], dict, bytes | None]:
    if len(envelope) > limits.max_manifest_bytes:
        raise LimitError(f"manifest of {len(envelope)} bytes exceeds the limit of {limits.max_manifest_bytes}")
    outer = _unpack(envelope, limits, "manifest envelope")
    if not isinstance(outer, dict) or set(outer) - _ENVELOPE_OPTIONAL != {"signed", "signature"}:
        raise FormatError(_ENVELOPE)
    if "inline" in outer and type(outer["inline"]) is not bytes:
        raise FormatError("'inline' must be the bytes of the release's one chunk")
    signed, signature, cosignatures = outer["signed"], outer["signature"], outer.get("cosignatures", {})
    if not isinstance(signed, bytes) or not isinstance(signature, bytes) or len(signature) != 64:
        raise FormatError("'signed' must be bytes and 'signature' 64 bytes")
    if "cosignatures" in outer and not (
            isinstance(cosignatures, dict) and 0 < len(cosignatures) <= MAX_COSIGNATURES
            and all(isinstance(k, str) and isinstance(v, bytes) and len(v) == 64 for k, v in cosignatures.items())):
        raise FormatError(f"'cosignatures' maps 1..{MAX_COSIGNATURES} key ids to 64-byte signatures")
    fields = _unpack(signed, limits, "signed manifest")
    fields = named_fields(fields)
    if not isinstance(fields, dict) or not isinstance(fields.get("key_id"), str):
        raise FormatError("the signed manifest must be a map naming its key_id")
    return signed, signature, cosignatures, fields, outer.get("inline")


_ENVELOPE = "a manifest envelope is a map of 'signed' and 'signature', and optionally 'cosignatures' and 'inline'"
_ENVELOPE_OPTIONAL = {"cosignatures", "inline"}


def _to_manifest(values: dict, signed: bytes, limits: Limits) -> Manifest:
    optional = _validate_fields(values, limits)
    manifest = Manifest(**{name: value for name, value in values.items() if name not in _OPTIONAL}, **optional)
    if manifest.canonical_bytes() != signed:
        raise FormatError("the signed manifest is not canonically encoded (format 1 under the field names, format 2 "
                          "under short keys: docs/format.md §5)")
    return manifest


def iso_time(ts: float) -> str:
    """A Unix time as people read it: ISO 8601 in UTC, to the second (``2026-12-03T16:02:41Z``)."""
    return datetime.datetime.fromtimestamp(int(ts), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unpack(data: bytes, limits: Limits, what: str) -> object:
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=True, max_str_len=1024, max_bin_len=limits.max_manifest_bytes,
            max_array_len=64, max_map_len=32, max_ext_len=0,
        )
    except UpdateError:
        raise
    except (msgpack.exceptions.UnpackException, ValueError, TypeError) as exc:
        raise FormatError(f"the {what} is not valid msgpack: {exc}") from None


_TYPES: dict[str, tuple[type, ...]] = {
    "format": (int,), "model": (str,), "version": (int,), "payload_kind": (str,),
    "base_version": (int, type(None)), "base_sha256": (bytes, type(None)), "target_sha256": (bytes,),
    "payload_length": (int,), "payload_sha256": (bytes,), "decompressed_length": (int,),
    "chunk_size": (int,), "chunk_sha256": (bytes,), "created": (int,), "expires": (int,),
    "rollout_percent": (float,), "rollout_salt": (str,), "key_id": (str,),
}


#: Keys a manifest may carry or leave out; absent means None (never an explicit nil).
_OPTIONAL = {"canary", "index", "fleet"}


def _validate_fields(fields: dict, limits: Limits) -> dict:
    """Check every field against the spec; returns the validated optional fields present (canary, index,
    fleet)."""
    if set(fields) - _OPTIONAL != set(_TYPES):
        raise FormatError(f"manifest fields differ from the spec: missing {set(_TYPES) - set(fields) or '{}'}, "
                          f"unknown {set(fields) - set(_TYPES) - _OPTIONAL or '{}'}")
    for name, types in _TYPES.items():
        if type(fields[name]) not in types:
            raise FormatError(f"manifest field {name} must be {' or '.join(t.__name__ for t in types)}")
    if fields["format"] not in MANIFEST_FORMATS:
        raise FormatError(f"manifest format {fields['format']} is not supported (this reader knows {MANIFEST_FORMATS})")
    validate_id(fields["model"], "model id")
    _validate_numbers(fields, limits)
    _validate_hashes(fields)
    if fields["payload_kind"] not in PAYLOAD_KINDS:
        raise FormatError(f"payload_kind must be 'delta' or 'full', got {fields['payload_kind']!r}")
    if fields["payload_kind"] == "delta" and (fields["base_sha256"] is None or fields["base_version"] is None):
        raise FormatError("a delta release must name its base version and base sha256")
    percent = fields["rollout_percent"]
    if not (math.isfinite(percent) and 0.0 <= percent <= 100.0) or len(fields["rollout_salt"]) > 64:
        raise FormatError("rollout_percent must be within 0..100 and rollout_salt at most 64 characters")
    optional: dict = {}
    if "canary" in fields:
        optional["canary"] = read_canary(fields["canary"], limits)
    if "index" in fields:
        optional["index"] = _checked_index(fields, limits)
    if "fleet" in fields:
        optional["fleet"] = validate_id(fields["fleet"], "fleet")
    return optional


def _checked_index(fields: dict, limits: Limits) -> tuple[IndexEntry, ...]:
    """The index, checked to list only releases up to this one's version, and not this release itself."""
    index = read_index(fields["index"], limits)
    for entry in index:
        if entry.version > fields["version"] or (entry.version, entry.kind) == (fields["version"],
                                                                                  fields["payload_kind"]):
            raise FormatError(f"the release index of release {fields['version']} lists release {entry.version} "
                              f"({entry.kind}): an index lists older releases and this version's other kind only")
    return index


def _validate_numbers(fields: dict, limits: Limits) -> None:
    for name in ("version", "payload_length", "decompressed_length", "chunk_size", "created", "expires"):
        if not 0 <= fields[name] <= _UINT64_MAX:
            raise FormatError(f"manifest field {name} must be an unsigned 64-bit integer")
    if fields["version"] < 1 or (fields["base_version"] is not None and fields["base_version"] < 0):
        raise FormatError("version must be at least 1 and base_version at least 0")
    if fields["expires"] <= fields["created"]:
        raise FormatError("a manifest must expire after it was created")
    if not MIN_CHUNK_SIZE <= fields["chunk_size"] <= MAX_CHUNK_SIZE:
        raise FormatError(f"chunk_size must be within {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes")
    chunk_count = -(-fields["payload_length"] // fields["chunk_size"])
    if chunk_count > limits.max_chunks:
        raise LimitError(f"{chunk_count} chunks exceed the limit of {limits.max_chunks}")
    if not 0 < fields["payload_length"] <= limits.max_payload_bytes:
        raise LimitError(f"payload_length {fields['payload_length']} is outside 1..{limits.max_payload_bytes}")
    if not 0 < fields["decompressed_length"] <= limits.max_decompressed_bytes:
        raise LimitError(
            f"decompressed_length {fields['decompressed_length']} is outside 1..{limits.max_decompressed_bytes}"
        )


def _validate_hashes(fields: dict) -> None:
    for name in ("target_sha256", "payload_sha256", "base_sha256"):
        if fields[name] is not None and len(fields[name]) != 32:
            raise FormatError(f"manifest field {name} must be 32 bytes")
    digests = fields["chunk_sha256"]
    expected = -(-fields["payload_length"] // fields["chunk_size"])
    if len(digests) % 32 or len(digests) // 32 != expected:
        raise FormatError(f"chunk_sha256 must hold {expected} digests of 32 bytes for this payload length")
