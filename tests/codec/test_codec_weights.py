"""RCW model files: encode/read round trip, the layout rules, and refusal of malformed headers."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from codec import FormatError, encode_weights, load_weights, read_slots, write_weights
from codec.limits import Limits
from codec.weights import ALIGNMENT, MAGIC

PROPERTY = settings(max_examples=100, deadline=None, database=None)

tensor_sets = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.lists(st.integers(1, 5), min_size=1, max_size=3).flatmap(
        lambda shape: arrays(np.float32, tuple(shape), elements=st.floats(width=32, allow_nan=False))
    ),
    max_size=5,
)


@PROPERTY
@given(tensor_sets)
def test_encoded_weights_read_back_bit_for_bit_at_aligned_disjoint_offsets(tensors: dict[str, np.ndarray]) -> None:
    data = encode_weights(tensors)
    slots = read_slots(data)
    assert list(slots) == list(tensors)
    (header_length,) = struct.unpack("<I", data[4:8])
    position = 8 + header_length
    for name, array in tensors.items():
        slot = slots[name]
        assert slot.shape == array.shape and slot.offset % ALIGNMENT == 0 and slot.offset >= position
        assert slot.view(data).tobytes() == array.astype("<f4").tobytes()
        position = slot.offset + slot.nbytes
    assert len(data) <= math.ceil(position / ALIGNMENT) * ALIGNMENT


def test_write_and_load_weights_roundtrip_through_a_file(tmp_path: Path) -> None:
    tensors = {"conv.weight": np.arange(54, dtype=np.float32).reshape(2, 3, 3, 3), "conv.bias": np.array([-0.0, 1.5])}
    path = tmp_path / "model.rcw"
    write_weights(path, tensors)
    loaded = load_weights(path)
    assert list(loaded) == list(tensors)
    for name, array in tensors.items():
        assert loaded[name].dtype == np.float32 and loaded[name].tobytes() == array.astype("<f4").tobytes()


def test_the_file_starts_with_magic_and_a_little_endian_header_length() -> None:
    data = encode_weights({"a": np.ones(3)})
    length = struct.unpack("<I", data[4:8])[0]
    assert data[:4] == b"RCW1"
    assert msgpack.unpackb(data[8 : 8 + length]) == {
        "format": 1, "tensors": [{"name": "a", "shape": [3], "offset": 64}]
    }
    assert data[64:76] == np.ones(3, "<f4").tobytes() and len(data) == 128


# -------------------------------------------------------------------------------------------- refusals


def rcw(header: object, size: int = 512, raw_header: bytes | None = None) -> bytes:
    """An RCW file of ``size`` bytes with the given header (zero padding and zero tensors)."""
    encoded = msgpack.packb(header) if raw_header is None else raw_header
    body = MAGIC + struct.pack("<I", len(encoded)) + encoded
    assert len(body) <= size
    return body + bytes(size - len(body))


def entry(name: str = "a", shape: list | None = None, offset: int = 128) -> dict:
    return {"name": name, "shape": [4] if shape is None else shape, "offset": offset}


def test_the_hand_built_file_is_valid() -> None:
    slots = read_slots(rcw({"format": 1, "tensors": [entry(), entry("b", [2, 8], 192)]}))
    assert [(s.name, s.offset, s.shape) for s in slots.values()] == [("a", 128, (4,)), ("b", 192, (2, 8))]


@pytest.mark.parametrize(
    "tensors",
    [
        [entry(offset=128), entry("b", [8], 128)],
        [entry(shape=[32], offset=128), entry("b", offset=192)],
        [entry(offset=130)],
        [entry(offset=160)],
        [entry(offset=0)],
        [entry(offset=-64)],
        [entry(offset=512)],
        [entry(shape=[97], offset=128)],
        [entry(offset=2**40)],
        [entry(), entry(offset=192)],
    ],
    ids=["same-offset", "overlapping", "unaligned", "half-aligned", "inside-magic", "negative", "at-the-end",
         "runs-past-the-end", "far-outside", "duplicate-name"],
)
def test_overlapping_unaligned_or_outside_tensors_are_refused(tensors: list[dict]) -> None:
    with pytest.raises(FormatError):
        read_slots(rcw({"format": 1, "tensors": tensors}))


def test_a_tensor_overlapping_the_header_is_refused() -> None:
    data = rcw({"format": 1, "tensors": [entry(offset=64), entry("long-name" * 8, offset=192)]})
    assert struct.unpack("<I", data[4:8])[0] + 8 > 64
    with pytest.raises(FormatError):
        read_slots(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"RCW", b"RCW1", b"RCW1\x00\x00\x00", b"RCW2" + rcw({"format": 1, "tensors": []})[4:],
     b"rcw1" + rcw({"format": 1, "tensors": []})[4:], b"\x00" * 64],
    ids=["empty", "three-bytes", "magic-only", "short-length", "magic-version", "magic-case", "zeros"],
)
def test_bad_magic_or_a_missing_header_is_refused(data: bytes) -> None:
    with pytest.raises(FormatError):
        read_slots(data)


def test_a_header_length_beyond_the_file_or_the_cap_is_refused() -> None:
    valid = rcw({"format": 1, "tensors": []})
    for length in (len(valid) - 7, 2**32 - 1):
        with pytest.raises(FormatError):
            read_slots(valid[:4] + struct.pack("<I", length) + valid[8:])
    big = bytes(5 * 1024 * 1024)
    with pytest.raises(FormatError):  # fits the file, but exceeds the 4 MiB header cap
        read_slots(MAGIC + struct.pack("<I", 4 * 1024 * 1024 + 1) + big)


@pytest.mark.parametrize(
    "header",
    [[], "RCW", {"format": 2, "tensors": []}, {"format": True, "tensors": []}, {"format": 1.0, "tensors": []},
     {"tensors": []}, {"format": 1}, {"format": 1, "tensors": {}}, {"format": 1, "tensors": [None]},
     {"format": 1, "tensors": [{"name": "a", "shape": [4]}]},
     {"format": 1, "tensors": [{**entry(), "dtype": "f32"}]},
     {"format": 1, "tensors": [entry(name=7)]},
     {"format": 1, "tensors": [{**entry(), "offset": 128.0}]},
     {"format": 1, "tensors": [{**entry(), "offset": True}]},
     {"format": 1, "tensors": [entry(shape=[])]},
     {"format": 1, "tensors": [entry(shape=[0])]},
     {"format": 1, "tensors": [entry(shape=[2**40])]}],
    ids=["array", "str", "format-2", "format-true", "format-float", "no-format", "no-tensors", "map-tensors",
         "nil-entry", "entry-missing-offset", "entry-extra-key", "int-name", "float-offset", "bool-offset",
         "no-dims", "zero-dim", "over-element-limit"],
)
def test_a_malformed_header_is_refused(header: object) -> None:
    with pytest.raises(FormatError):
        read_slots(rcw(header))


@pytest.mark.parametrize(
    "raw",
    [b"\xc1", b"\x82\xa6format", b"\x91" * 5000 + b"\xc0", b"\xdd\xff\xff\xff\xff",
     msgpack.packb({"format": 1, "tensors": []}) + b"\xc0"],
    ids=["reserved-byte", "truncated", "deep", "length-bomb", "trailing"],
)
def test_a_header_that_is_not_one_msgpack_document_is_refused(raw: bytes) -> None:
    with pytest.raises(FormatError):
        read_slots(rcw(None, size=8 + len(raw) + 64, raw_header=raw))


def test_more_tensors_than_the_record_limit_are_refused() -> None:
    tensors = [entry(f"t{i}", offset=64 * (10 + i), shape=[1]) for i in range(5)]
    assert len(read_slots(rcw({"format": 1, "tensors": tensors}, size=2048), Limits(max_records=5))) == 5
    with pytest.raises(FormatError):
        read_slots(rcw({"format": 1, "tensors": tensors}, size=2048), Limits(max_records=4))
