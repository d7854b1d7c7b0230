"""Ed25519 signing keys: generation, files on disk, and the short key ids manifests name."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
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

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise SignatureError unless ``signature`` is this key's signature of ``message``."""
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            raise SignatureError(
                f"the manifest signature does not verify with key {self.key_id}: the manifest was "
                "altered or signed by another key"
            ) from None


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
