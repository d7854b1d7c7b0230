"""Ed25519 signing keys: generation, files on disk, and the short key ids manifests name."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from codec.errors import SignatureError

PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"


def key_id(public_key: Ed25519PublicKey) -> str:
    """16 hex digits: the first 8 bytes of sha256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class VerifyKey:
    """A public key a device trusts, with its id."""

    key_id: str
    public_key: Ed25519PublicKey

    @property
    def raw(self) -> bytes:
        """The 32-byte public key, as trust roots carry it."""
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @classmethod
    def from_raw(cls, raw: bytes) -> VerifyKey:
        """The key of 32 raw bytes; raises SignatureError for anything else."""
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise SignatureError("a public key is 32 raw bytes")
        try:
            public = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise SignatureError(f"not an Ed25519 public key: {exc}") from None
        return cls(key_id(public), public)

    def verify(self, signature: bytes, message: bytes, what: str = "manifest") -> None:
        """Raise SignatureError unless ``signature`` is this key's signature of ``message``."""
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            raise SignatureError(
                f"the {what} signature does not verify with key {self.key_id}: the {what} was "
                "altered or signed by another key"
            ) from None

    def signs(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``message``."""
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class ReleaseKeys:
    """The keys a device takes releases from: ``threshold`` distinct ones must sign each manifest, and a key
    listed in ``models`` signs only for those model ids. ``revoked`` names keys an earlier trust root listed
    and a newer one dropped (refused as revoked-key rather than unknown-key). Simple mode (trusted_keys in
    device.toml) is every key, threshold 1, any model."""

    keys: Mapping[str, VerifyKey]
    threshold: int = 1
    models: Mapping[str, frozenset[str]] = field(default_factory=dict)
    revoked: frozenset[str] = frozenset()
    #: Where the keys come from, for refusals: "trusted_keys" or "trust root v3".
    source: str = "trusted_keys"

    @classmethod
    def of(cls, keys: ReleaseKeys | Mapping[str, VerifyKey]) -> ReleaseKeys:
        """``keys`` as ReleaseKeys: a plain mapping of key id to key is simple mode."""
        return keys if isinstance(keys, ReleaseKeys) else cls(dict(keys))

    def may_sign(self, key_id: str, model: str) -> bool:
        """Whether key ``key_id`` is trusted and allowed to sign releases of ``model``."""
        allowed = self.models.get(key_id)
        return key_id in self.keys and (allowed is None or model in allowed)


@dataclass(frozen=True)
class SigningKey:
    """The publisher's private key."""

    private_key: Ed25519PrivateKey

    @property
    def verify_key(self) -> VerifyKey:
        public = self.private_key.public_key()
        return VerifyKey(key_id(public), public)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def generate_signing_key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


def write_keypair(directory: Path, key: SigningKey) -> tuple[Path, Path]:
    """Write DIR/signing.key (mode 0600, PKCS#8 PEM) and DIR/signing.pub; refuse to overwrite."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; move it away first (keys are never overwritten)")
    private_pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(
        key.verify_key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def load_signing_key(path: Path) -> SigningKey:
    """Read a PKCS#8 PEM Ed25519 private key; raises SignatureError if it is anything else."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted
        raise SignatureError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 key")
    return SigningKey(key)


def load_verify_key(path: Path) -> VerifyKey:
    """Read a PEM Ed25519 public key; raises SignatureError if it is anything else."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except ValueError as exc:
        raise SignatureError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path} is not an Ed25519 key")
    return VerifyKey(key_id(key), key)
