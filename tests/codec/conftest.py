"""Shared fixtures for the codec tests: deterministic keys, a sample update and a release built from it.

Everything here is torch-free: numpy, msgpack, zstandard and cryptography only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import codec
from codec import (
    Record,
    Release,
    SigningKey,
    VerifyKey,
    dense_record,
    encode_payload,
    lowrank_record,
    make_release,
    sparse_record,
)

#: A fixed creation time, so releases built in tests do not depend on the clock.
CREATED = 1_700_000_000


def key_from_seed(seed: bytes) -> SigningKey:
    """A deterministic Ed25519 signing key (Ed25519 signatures are deterministic too)."""
    return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """The publisher's key that devices trust."""
    return key_from_seed(b"\x11" * 32)


@pytest.fixture(scope="session")
def foreign_key() -> SigningKey:
    """A well-formed key that devices do not trust."""
    return key_from_seed(b"\x22" * 32)


@pytest.fixture(scope="session")
def trusted(signing_key: SigningKey) -> dict[str, VerifyKey]:
    """The trusted-keys map a device holds: only the publisher's key."""
    return {signing_key.verify_key.key_id: signing_key.verify_key}


@pytest.fixture(scope="session")
def sample_records() -> list[Record]:
    """One record of each tensor kind, built through the quantise helpers from a seeded RNG."""
    rng = np.random.default_rng(1234)
    return [
        lowrank_record("conv.weight", (6, 2, 3, 3), rng.normal(size=(6, 3)), rng.normal(size=(3, 18)), "i8"),
        lowrank_record("fc.weight", (5, 7), rng.normal(size=(5, 2)), rng.normal(size=(2, 7)), "i4"),
        dense_record("fc.bias", rng.normal(size=5), mode="add"),
        dense_record("norm.weight", rng.normal(size=(4, 3)), mode="set", dtype="i8", per_row=True),
        sparse_record("emb.weight", (8, 4), np.array([0, 5, 17, 31]), rng.normal(size=4), dtype="i4"),
    ]


@pytest.fixture(scope="session")
def build_release(signing_key: SigningKey, sample_records: list[Record]) -> Callable[..., Release]:
    """A factory for releases of the sample payload; keyword arguments override make_release's."""

    def build(**overrides: object) -> Release:
        payload, length = encode_payload(sample_records, level=3)
        arguments: dict[str, object] = {
            "model": "kws-tiny", "version": 5, "payload": payload, "decompressed_length": length,
            "target_sha256": hashlib.sha256(b"target").digest(), "key": signing_key, "base_version": 4,
            "base_sha256": hashlib.sha256(b"base").digest(), "chunk_size": 256, "rollout_salt": "salt",
            "created": CREATED,
        }
        arguments.update(overrides)
        return make_release(**arguments)  # type: ignore[arg-type]

    return build


@pytest.fixture(scope="session")
def child_env() -> dict[str, str]:
    """Environment for test subprocesses: they import this very codec, wherever it is installed."""
    repo = str(Path(codec.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
