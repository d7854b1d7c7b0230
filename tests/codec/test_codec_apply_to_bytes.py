"""Applying a payload to a copy in memory (codec.apply.apply_to_bytes) and an update file to its base
(codec.update_file.updated_model_file): the same bytes a device writes, checked against what they name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from codec import (
    BaseMismatchError,
    FormatError,
    IntegrityError,
    NonFiniteError,
    apply_payload,
    apply_to_bytes,
    dense_record,
    encode_payload,
    encode_weights,
    full_record,
    lowrank_record,
)
from codec.update_file import UpdateFile, updated_model_file

RNG = np.random.default_rng(3)
BASE = encode_weights({"fc.weight": RNG.standard_normal((24, 16)).astype(np.float32),
                       "fc.bias": RNG.standard_normal(24).astype(np.float32)})
RECORDS = [lowrank_record("fc.weight", (24, 16), RNG.standard_normal((24, 3)), RNG.standard_normal((3, 16))),
           dense_record("fc.bias", RNG.standard_normal(24) * 0.1, dtype="i8")]


def test_the_copy_in_memory_has_exactly_the_bytes_a_device_writes_and_the_input_stays(tmp_path: Path) -> None:
    payload, length = encode_payload(RECORDS)
    kept = bytes(BASE)
    data, digest = apply_to_bytes(BASE, payload, length)
    on_disk = tmp_path / "model.rcw"
    on_disk.write_bytes(BASE)
    assert apply_payload(on_disk, payload, length) == digest == hashlib.sha256(data).digest()
    assert on_disk.read_bytes() == data != BASE
    assert BASE == kept


def test_a_full_payload_gives_its_file_whatever_the_model() -> None:
    payload, length = encode_payload([full_record(b"a whole new model file")])
    assert apply_to_bytes(b"", payload, length) == (b"a whole new model file",
                                                     hashlib.sha256(b"a whole new model file").digest())


def test_a_delta_needs_the_file_it_applies_to() -> None:
    payload, length = encode_payload(RECORDS)
    with pytest.raises(FormatError, match="empty"):
        apply_to_bytes(b"", payload, length)


def test_a_result_that_is_not_finite_is_refused() -> None:
    huge = lowrank_record("fc.weight", (24, 16), np.full((24, 1), 1e30), np.full((1, 16), 1e30))
    payload, length = encode_payload([huge])
    with pytest.raises(NonFiniteError):
        apply_to_bytes(BASE, payload, length)


def _update(base_sha256: bytes | None, target_sha256: bytes | None) -> UpdateFile:
    payload, length = encode_payload(RECORDS)
    return UpdateFile(payload, length, "delta", base_sha256, target_sha256)


def test_an_update_file_gives_its_target_from_its_base() -> None:
    target, target_sha = apply_to_bytes(BASE, *encode_payload(RECORDS))
    assert updated_model_file(BASE, _update(hashlib.sha256(BASE).digest(), target_sha)) == target
    assert updated_model_file(BASE, _update(None, None)) == target  # what it does not name is not checked


def test_an_update_file_refuses_another_base_and_a_target_it_does_not_make() -> None:
    with pytest.raises(BaseMismatchError):
        updated_model_file(BASE, _update(hashlib.sha256(b"another file").digest(), None))
    with pytest.raises(IntegrityError):
        updated_model_file(BASE, _update(hashlib.sha256(BASE).digest(), bytes(32)))
