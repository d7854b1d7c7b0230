"""Apply within bounded memory: a full payload streams into the file, a delta goes tensor by tensor; and a
payload must be what the manifest says it is (full or delta)."""

from __future__ import annotations

import io
import tracemalloc
from dataclasses import replace
from pathlib import Path

import msgpack
import numpy as np
import pytest

from codec import FormatError, LimitError, apply_payload, decode_payload, encode_payload, encode_weights, full_record
from codec.full_payload import starts_with_full_record, write_full_record
from codec.limits import DEFAULT_LIMITS, MIB
from codec.payload import compress
from simulator.testbed.synthetic import random_update

TENSOR = 8 * MIB


@pytest.fixture(scope="module")
def model() -> bytes:
    """32 MiB of random float32 in four tensors of 8 MiB."""
    rng = np.random.default_rng(0)
    return encode_weights({f"w{i}": rng.standard_normal((2048, 1024), dtype=np.float32) for i in range(4)})


def _peak_mib(action) -> float:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


def test_a_full_payload_streams_into_the_file_without_holding_the_model(tmp_path: Path, model: bytes) -> None:
    payload, length = encode_payload([full_record(model)], level=1)
    path = tmp_path / "model.rcw"
    path.write_bytes(b"the running model's copy")
    assert _peak_mib(lambda: apply_payload(path, payload, length, full=True)) < 8
    assert path.read_bytes() == model and sorted(p.name for p in tmp_path.iterdir()) == ["model.rcw"]


def test_a_delta_needs_about_its_largest_tensor(tmp_path: Path, model: bytes) -> None:
    update = random_update(model, 1)
    path = tmp_path / "model.rcw"
    path.write_bytes(model)
    assert _peak_mib(lambda: apply_payload(path, update.payload, update.decompressed_length, full=False)) < (
        TENSOR / MIB + 16)
    reference = tmp_path / "reference.rcw"
    reference.write_bytes(model)
    assert apply_payload(reference, update.payload, update.decompressed_length) == update.target_sha256


def test_a_payload_that_is_not_what_was_declared_is_refused(tmp_path: Path, model: bytes) -> None:
    path = tmp_path / "model.rcw"
    path.write_bytes(model)
    full, full_length = encode_payload([full_record(b"a whole model")])
    update = random_update(model, 2)
    with pytest.raises(FormatError, match="delta was declared"):
        apply_payload(path, full, full_length, full=False)
    with pytest.raises(FormatError, match="not a full record"):
        apply_payload(path, update.payload, update.decompressed_length, full=True)
    with pytest.raises(TypeError, match="full"):
        apply_payload(path, _Source(full), full_length)
    assert path.read_bytes() == model


class _Source:
    def __init__(self, data: bytes) -> None:
        self._stream, self._length = io.BytesIO(data), len(data)

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)


def _document(record: dict) -> bytes:
    return msgpack.packb({"format": 1, "records": [record]}, use_bin_type=True)


@pytest.mark.parametrize("record", [
    {"data": b"file", "name": "model", "kind": "full"},
    {"name": "model", "data": b"file", "kind": "full"},
])
def test_a_full_record_reads_in_any_key_order(record: dict) -> None:
    document = _document(record)
    out = io.BytesIO()
    assert starts_with_full_record(compress(document), len(document), DEFAULT_LIMITS)
    assert write_full_record(_Source(compress(document)), len(document), DEFAULT_LIMITS, out) == "model"
    assert out.getvalue() == b"file"


@pytest.mark.parametrize("record", [
    {"kind": "full", "name": "model", "data": b"file", "extra": 1},
    {"kind": "full", "name": "model", "data": b""},
    {"kind": "full", "name": "", "data": b"file"},
    {"kind": "full", "name": "model", "data": "not bytes"},
    {"kind": "full", "name": "model", "kind2": b"file"},
    {"kind": "dense", "name": "model", "data": b"file"},
])
def test_a_malformed_full_record_is_refused(record: dict) -> None:
    document = _document(record)
    with pytest.raises(FormatError):
        write_full_record(compress(document), len(document), DEFAULT_LIMITS, io.BytesIO())


def _nested_lists(depth_bytes: int) -> bytes:
    """msgpack of ``depth_bytes`` one-element arrays nested, ending in []: tiny bytes, many objects decoded."""
    return b"\x91" * depth_bytes + b"\x90"


def _refusal(action) -> tuple[Exception, float]:
    """The error ``action`` raises and the peak MiB traced while it ran."""
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as raised:
            action()
        return raised.value, tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("prefix", [
    b"\x83\xa4kind",  # the kind's value
    b"\x83\xa4kind\xa4full\xa4name",  # the name's value (starts_with_full_record stops at the kind)
    b"\x83",  # a key
])
def test_hostile_keys_and_names_are_refused_without_decoding_them(prefix: bytes) -> None:
    document = b"\x82\xa6format\x01\xa7records\x91" + prefix + _nested_lists(200_000)
    payload = compress(document)
    checks = [lambda: write_full_record(payload, len(document), DEFAULT_LIMITS, io.BytesIO())]
    if b"full" not in prefix:
        checks.append(lambda: starts_with_full_record(payload, len(document), DEFAULT_LIMITS))
    for check in checks:
        error, peak_mib = _refusal(check)
        assert "string" in str(error) and peak_mib < 2, (error, peak_mib)


def test_a_hostile_payload_header_is_refused_without_decoding_it() -> None:
    document = b"\x82\xa6format" + _nested_lists(200_000)
    with pytest.raises(FormatError, match="format"):
        write_full_record(compress(document), len(document), DEFAULT_LIMITS, io.BytesIO())


def test_the_record_limit_covers_the_whole_full_record_as_for_every_record() -> None:
    data = b"x" * 4096
    document = _document({"kind": "full", "name": "model", "data": data})
    record_bytes = len(msgpack.packb({"kind": "full", "name": "model", "data": data}, use_bin_type=True))
    exact = replace(DEFAULT_LIMITS, max_record_bytes=record_bytes)
    short = replace(DEFAULT_LIMITS, max_record_bytes=record_bytes - 1)
    assert write_full_record(compress(document), len(document), exact, io.BytesIO()) == "model"
    assert decode_payload(compress(document), len(document), exact)[0].data == data
    for reader in (lambda: write_full_record(compress(document), len(document), short, io.BytesIO()),
                   lambda: decode_payload(compress(document), len(document), short)):
        with pytest.raises(LimitError):
            reader()


def test_a_delta_with_a_large_field_first_is_not_taken_for_a_full_record(model: bytes) -> None:
    update = random_update(model, 3)
    assert not starts_with_full_record(update.payload, update.decompressed_length, DEFAULT_LIMITS)
    big_first = {"u": b"\x00" * (2 * MIB), "kind": "lowrank", "name": "w0"}
    document = _document(big_first)
    assert not starts_with_full_record(compress(document), len(document), DEFAULT_LIMITS)
