"""The trust root: which keys sign releases, which keys sign the next root, and how many of each must.

After TUF's root role. The envelope is the msgpack map {"signed": bin, "signatures": {key id: bin}};
``signed`` is the canonical msgpack map of the fields below (keys sorted) and every Ed25519 signature
covers ``ROOT_DOMAIN + signed``, so no root signature is ever a valid manifest signature (whose domain
differs) or the reverse. Root v+1 counts only when ``root_threshold`` of root v's root keys signed it and
``root_threshold`` of its own did too: a device walks every version in order from the one it was
provisioned with, and never goes back (docs/format.md section 9, docs/security.md).

    format 1 · version >= 1 · created, expires (Unix seconds) · root_keys {key id: 32-byte key}
    root_threshold · release_keys {key id: {"public": 32-byte key, "models": [model id, ...]?}}
    release_threshold
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgpack

from codec.errors import ExpiredError, FormatError, LimitError, RootError, SignatureError, ThresholdError, UpdateError
from codec.keys import ReleaseKeys, SigningKey, VerifyKey
from codec.manifest import iso_time, validate_id

ROOT_FORMAT = 1
ROOT_DOMAIN = b"rankcast-root-v1\x00"
#: The largest root envelope a device reads.
MAX_ROOT_BYTES = 64 * 1024
#: The most root keys, release keys and signatures a root holds.
MAX_KEYS = 16
#: The most model ids one release key may be limited to.
MAX_MODELS = 32
_FIELDS = {"format", "version", "created", "expires", "root_keys", "root_threshold", "release_keys",
           "release_threshold"}
_UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Root:
    """One version of the trust root (its fields; signatures live in the envelope)."""

    version: int
    created: int
    expires: int
    root_keys: Mapping[str, VerifyKey]
    root_threshold: int
    release_keys: Mapping[str, VerifyKey]
    release_threshold: int = 1
    #: Release key id -> the model ids it may sign; a key not here signs for any model.
    release_models: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "release_models", dict(self.release_models or {}))
        _check_root(self)

    def signed_fields(self) -> dict:
        models = self.release_models
        release = {kid: {"public": key.raw, **({"models": sorted(models[kid])} if kid in models else {})}
                   for kid, key in self.release_keys.items()}
        return {
            "format": ROOT_FORMAT, "version": self.version, "created": self.created, "expires": self.expires,
            "root_keys": {kid: key.raw for kid, key in sorted(self.root_keys.items())},
            "root_threshold": self.root_threshold, "release_keys": dict(sorted(release.items())),
            "release_threshold": self.release_threshold,
        }

    def canonical_bytes(self) -> bytes:
        return msgpack.packb(dict(sorted(self.signed_fields().items())), use_bin_type=True)

    def release_trust(self, revoked: Iterable[str] = ()) -> ReleaseKeys:
        """What this root lets a device take releases from; ``revoked`` names keys earlier roots listed."""
        return ReleaseKeys(dict(self.release_keys), self.release_threshold, dict(self.release_models),
                           frozenset(revoked) - set(self.release_keys), f"trust root v{self.version}")

    def check_fresh(self, now: float) -> None:
        """Raise ExpiredError if the root expired: a device then takes no release until a newer root comes
        (a freeze of the trust root, after TUF's final-root expiry check)."""
        if now >= self.expires:
            raise ExpiredError(f"trust root v{self.version} expired at {iso_time(self.expires)} (the device's time "
                               f"is {iso_time(now)}); sign and publish a newer root (`rankcast trust renew`)")


@dataclass(frozen=True)
class SignedRoot:
    """A root as it travels: its fields, the bytes signed, and the signatures by key id (not yet checked)."""

    root: Root
    signed: bytes
    signatures: Mapping[str, bytes]

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.signed).digest()

    def signers(self, keys: Mapping[str, VerifyKey]) -> set[str]:
        """The ids of ``keys`` whose signature of this root verifies."""
        message = ROOT_DOMAIN + self.signed
        return {kid for kid, sig in self.signatures.items() if kid in keys and keys[kid].signs(sig, message)}

    def to_envelope(self) -> bytes:
        return msgpack.packb({"signed": self.signed, "signatures": dict(sorted(self.signatures.items()))})


def sign_root(root: Root | SignedRoot, signers: Sequence[SigningKey]) -> bytes:
    """The envelope of ``root`` with the signatures of ``signers`` added (a root is signed key by key, so
    root keys kept on different machines can each add theirs: `rankcast trust sign`)."""
    signed = root if isinstance(root, SignedRoot) else SignedRoot(root, root.canonical_bytes(), {})
    signatures = dict(signed.signatures)
    for signer in signers:
        signatures[signer.verify_key.key_id] = signer.sign(ROOT_DOMAIN + signed.signed)
    if len(signatures) > MAX_KEYS:
        raise LimitError(f"a root carries at most {MAX_KEYS} signatures")
    return SignedRoot(signed.root, signed.signed, signatures).to_envelope()


def read_root(envelope: bytes) -> SignedRoot:
    """Parse a root envelope WITHOUT checking who signed it; raises FormatError or LimitError."""
    if len(envelope) > MAX_ROOT_BYTES:
        raise LimitError(f"a trust root of {len(envelope)} bytes exceeds the limit of {MAX_ROOT_BYTES}")
    outer = _unpack(envelope, "root envelope")
    if not isinstance(outer, dict) or set(outer) != {"signed", "signatures"}:
        raise FormatError("a root envelope is a map with exactly 'signed' and 'signatures'")
    signed, signatures = outer["signed"], outer["signatures"]
    if not isinstance(signed, bytes) or not isinstance(signatures, dict) or not 0 < len(signatures) <= MAX_KEYS:
        raise FormatError(f"'signed' must be bytes and 'signatures' map 1..{MAX_KEYS} key ids to signatures")
    if not all(isinstance(k, str) and isinstance(v, bytes) and len(v) == 64 for k, v in signatures.items()):
        raise FormatError("each root signature is 64 bytes under a key id")
    root = _to_root(_unpack(signed, "signed root"))
    if root.canonical_bytes() != signed:
        raise FormatError("the signed root is not canonically encoded")
    return SignedRoot(root, signed, signatures)


def verify_first_root(envelope: bytes) -> Root:
    """The root a device is provisioned with: trusted because it was installed, and checked to be signed
    by a threshold of its own root keys (a typo or a half-signed file is refused at once)."""
    signed = read_root(envelope)
    _require(signed, signed.root.root_keys, signed.root.root_threshold, f"root v{signed.root.version}'s own")
    return signed.root


def verify_next_root(envelope: bytes, current: Root) -> SignedRoot:
    """Root ``current.version + 1``, checked against ``current``: a threshold of the current root keys and
    a threshold of its own signed it. Raises RootError for another version, ThresholdError otherwise."""
    signed = read_root(envelope)
    if signed.root.version != current.version + 1:
        raise RootError(f"root v{signed.root.version} does not follow v{current.version}: roots are taken one "
                        "version at a time and never backwards")
    _require(signed, current.root_keys, current.root_threshold, f"root v{current.version}'s")
    _require(signed, signed.root.root_keys, signed.root.root_threshold, f"root v{signed.root.version}'s own")
    return signed


def _require(signed: SignedRoot, keys: Mapping[str, VerifyKey], threshold: int, whose: str) -> None:
    count = len(signed.signers(keys))
    if count < threshold:
        raise ThresholdError(f"root v{signed.root.version} is signed by {count} of {whose} root keys; {threshold} "
                             "must sign (`rankcast trust sign` adds a signature)")


def _unpack(data: bytes, what: str) -> object:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_str_len=256, max_bin_len=MAX_ROOT_BYTES,
                               max_array_len=MAX_MODELS, max_map_len=MAX_KEYS + 1, max_ext_len=0)
    except UpdateError:
        raise
    except (msgpack.exceptions.UnpackException, ValueError, TypeError) as exc:
        raise FormatError(f"the {what} is not valid msgpack: {exc}") from None


def _to_root(fields: object) -> Root:
    if not isinstance(fields, dict) or set(fields) != _FIELDS:
        raise FormatError(f"a root holds exactly the fields {', '.join(sorted(_FIELDS))}")
    for name in ("format", "version", "created", "expires", "root_threshold", "release_threshold"):
        if type(fields[name]) is not int or not 0 <= fields[name] <= _UINT64_MAX:
            raise FormatError(f"root field {name} must be an unsigned 64-bit integer")
    if fields["format"] != ROOT_FORMAT:
        raise FormatError(f"root format {fields['format']} is not supported (this reader knows {ROOT_FORMAT})")
    if not isinstance(fields["root_keys"], dict) or not isinstance(fields["release_keys"], dict):
        raise FormatError("root_keys and release_keys must be maps of key id to key")
    root_keys = {kid: _key(kid, raw) for kid, raw in fields["root_keys"].items()}
    release_keys, models = {}, {}
    for kid, entry in fields["release_keys"].items():
        if not isinstance(entry, dict) or not {"public"} <= set(entry) <= {"public", "models"}:
            raise FormatError("a release key is a map of 'public' and optionally 'models'")
        release_keys[kid] = _key(kid, entry["public"])
        if "models" in entry:
            models[kid] = _models(entry["models"])
    return Root(fields["version"], fields["created"], fields["expires"], root_keys, fields["root_threshold"],
                release_keys, fields["release_threshold"], models)


def _key(key_id: object, raw: object) -> VerifyKey:
    try:
        key = VerifyKey.from_raw(raw)
    except SignatureError as exc:
        raise FormatError(f"root key {key_id!r}: {exc}") from None
    if key.key_id != key_id:
        raise FormatError(f"root key listed as {key_id!r} has id {key.key_id}")
    return key


def _models(models: object) -> frozenset[str]:
    if not isinstance(models, list) or not models or len(set(models)) != len(models) or models != sorted(models):
        raise FormatError("a release key's models are a sorted list of distinct model ids")
    return frozenset(validate_id(model, "model id") for model in models)


def _check_root(root: Root) -> None:
    """The rules every root keeps, whether built by the publisher or read from bytes."""
    if root.version < 1 or root.expires <= root.created:
        raise FormatError("a root's version is at least 1 and it expires after it was created")
    for name, keys, threshold in (("root", root.root_keys, root.root_threshold),
                                  ("release", root.release_keys, root.release_threshold)):
        if not 0 < len(keys) <= MAX_KEYS:
            raise FormatError(f"a root lists 1..{MAX_KEYS} {name} keys")
        if not 1 <= threshold <= len(keys):
            raise FormatError(f"the {name} threshold {threshold} must be within 1..{len(keys)} ({name} keys listed)")
    models = root.release_models
    if set(models) - set(root.release_keys) or any(not 0 < len(m) <= MAX_MODELS for m in models.values()):
        raise FormatError(f"model limits name listed release keys, each with 1..{MAX_MODELS} models")
