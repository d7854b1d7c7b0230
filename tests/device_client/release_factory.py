"""Models, updates and releases for the device and MQTT tests, built with the codec only (no torch).

Imported by tests/device_client/conftest.py and tests/mqtt/conftest.py (which puts this folder on
sys.path): one place for the recipes both suites need.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from codec.apply import apply_payload
from codec.keys import SigningKey, generate_signing_key, write_keypair
from codec.payload import encode_payload
from codec.quantise import dense_record, lowrank_record
from codec.release import Release
from codec.update_file import UpdateFile
from codec.weights import encode_weights, read_slots
from publisher.release_build import full_release, update_release

MODEL = "digits"
SHAPES = {"fc1.weight": (48, 32), "fc1.bias": (48,), "fc2.weight": (10, 48), "fc2.bias": (10,)}
DAY = 86400


def make_model(seed: int, shapes: dict[str, tuple[int, ...]] = SHAPES) -> bytes:
    """An RCW model file with random float32 tensors."""
    rng = np.random.default_rng(seed)
    return encode_weights({name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()})


def make_update(base: bytes, seed: int, rank: int = 4) -> UpdateFile:
    """A delta for ``base``: low-rank factors for matrices, dense int8 deltas for vectors."""
    rng = np.random.default_rng(seed)
    records = []
    for name, slot in read_slots(base).items():
        if len(slot.shape) == 2:
            u = rng.standard_normal((slot.shape[0], rank)).astype(np.float32) * 0.1
            v = rng.standard_normal((rank, slot.shape[1])).astype(np.float32) * 0.1
            records.append(lowrank_record(name, slot.shape, u, v))
        else:
            records.append(dense_record(name, rng.standard_normal(slot.shape) * 0.01, dtype="i8"))
    payload, length = encode_payload(records)
    target = hashlib.sha256(_apply(base, payload, length)).digest()
    return UpdateFile(payload, length, "delta", hashlib.sha256(base).digest(), target)


def applied(base: bytes, update: UpdateFile) -> bytes:
    """The model file ``update`` turns ``base`` into."""
    return _apply(base, update.payload, update.decompressed_length)


def delta(base: bytes, seed: int, model: str, version: int, key: SigningKey, **options) -> tuple[Release, bytes]:
    """A signed delta release of ``model`` at ``version`` for ``base``, and the model file it makes."""
    options.setdefault("lifetime_s", DAY)
    update = make_update(base, seed)
    return update_release(update, model=model, version=version, key=key, **options), applied(base, update)


def full(model_file: bytes, model: str, version: int, key: SigningKey, **options) -> Release:
    options.setdefault("lifetime_s", DAY)
    return full_release(model_file, model=model, version=version, key=key, **options)


def keypair(directory: Path) -> tuple[SigningKey, Path]:
    """A fresh signing key and the path of its public key file."""
    key = generate_signing_key()
    _, public = write_keypair(directory, key)
    return key, public


def _apply(base: bytes, payload: bytes, length: int) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.rcw"
        path.write_bytes(base)
        apply_payload(path, payload, length)
        return path.read_bytes()
