"""Signing keys on disk: written once with safe permissions, read back, anything else refused."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from codec import SignatureError, SigningKey, generate_signing_key, load_signing_key, load_verify_key
from codec.keys import write_keypair


def test_a_keypair_roundtrips_through_files_with_a_private_mode(tmp_path: Path) -> None:
    key = generate_signing_key()
    private, public = write_keypair(tmp_path / "keys", key)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    loaded, verify = load_signing_key(private), load_verify_key(public)
    assert verify.key_id == key.verify_key.key_id == loaded.verify_key.key_id
    message = b"rankcast"
    verify.verify(loaded.sign(message), message)
    with pytest.raises(SignatureError):
        verify.verify(loaded.sign(message), message + b"!")


def test_existing_key_files_are_never_overwritten(tmp_path: Path) -> None:
    private, _ = write_keypair(tmp_path, generate_signing_key())
    before = private.read_bytes()
    with pytest.raises(FileExistsError):
        write_keypair(tmp_path, generate_signing_key())
    assert private.read_bytes() == before


def test_the_key_id_is_sixteen_hex_digits_of_the_public_key_hash() -> None:
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
    raw = key.verify_key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.verify_key.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert generate_signing_key().verify_key.key_id != key.verify_key.key_id


def _pem_files(tmp_path: Path) -> dict[str, Path]:
    ed = Ed25519PrivateKey.generate()
    other = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = serialization.PrivateFormat.PKCS8
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    contents = {
        "garbage": b"not a key",
        "empty": b"",
        "encrypted": ed.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.BestAvailableEncryption(b"pw")),
        "ecdsa-private": other.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()),
        "ecdsa-public": other.public_key().public_bytes(serialization.Encoding.PEM, spki),
        "ed25519-public": ed.public_key().public_bytes(serialization.Encoding.PEM, spki),
        "ed25519-private": ed.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()),
    }
    paths = {}
    for name, content in contents.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("name", ["garbage", "empty", "encrypted", "ecdsa-private", "ed25519-public"])
def test_anything_but_a_plain_ed25519_private_key_is_refused_as_signing_key(tmp_path: Path, name: str) -> None:
    with pytest.raises(SignatureError):
        load_signing_key(_pem_files(tmp_path)[name])


@pytest.mark.parametrize("name", ["garbage", "empty", "ecdsa-public", "ed25519-private"])
def test_anything_but_an_ed25519_public_key_is_refused_as_verify_key(tmp_path: Path, name: str) -> None:
    with pytest.raises(SignatureError):
        load_verify_key(_pem_files(tmp_path)[name])
