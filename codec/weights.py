"""RCW, the codec's own model file: named float32 tensors at fixed offsets, patchable in place.

Layout: b"RCW1", a little-endian uint32 header length, the msgpack header
{"format": 1, "tensors": [{"name": str, "shape": [int, ...], "offset": int}, ...]}, then the
tensors as little-endian float32 in C order, each starting at a multiple of 64 bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np

from codec.arrays import read_shape
from codec.errors import FormatError, UpdateError
from codec.limits import DEFAULT_LIMITS, Limits

MAGIC = b"RCW1"
ALIGNMENT = 64
_MAX_HEADER = 4 * 1024 * 1024


@dataclass(frozen=True)
class TensorSlot:
    """Where one float32 tensor lives inside a model file.

    ``shape`` is the logical shape (the one update records name). ``permutation`` is None when the file
    stores the tensor in that shape (RCW); otherwise the file holds ``numpy.transpose(logical,
    permutation)`` in C order, as TFLite stores a PyTorch convolution kernel (OIHW as OHWI).
    """

    name: str
    offset: int
    shape: tuple[int, ...]
    permutation: tuple[int, ...] | None = None

    @property
    def nbytes(self) -> int:
        return 4 * math.prod(self.shape)

    def view(self, buffer: memoryview | bytearray) -> np.ndarray:
        """The tensor in its logical shape, sharing memory with ``buffer`` (writable if it is)."""
        flat = np.frombuffer(buffer, "<f4", math.prod(self.shape), self.offset)
        if self.permutation is None:
            return flat.reshape(self.shape)
        stored = flat.reshape([self.shape[axis] for axis in self.permutation])
        return stored.transpose(np.argsort(self.permutation))


#: Finds the tensors inside a model file's bytes: name -> slot (codec.apply patches through them).
SlotReader = Callable[[memoryview, Limits], Mapping[str, TensorSlot]]


def encode_weights(tensors: Mapping[str, np.ndarray]) -> bytes:
    """An RCW file holding ``tensors`` (converted to float32) in the given order."""
    arrays = {name: np.ascontiguousarray(value, "<f4") for name, value in tensors.items()}
    relative, position = [], 0
    for array in arrays.values():
        relative.append(position)
        position = _align(position + array.nbytes)
    data_start = 0
    while True:  # offsets are absolute, so the header's length depends on where the data starts
        entries = [
            {"name": name, "shape": list(array.shape), "offset": data_start + rel}
            for (name, array), rel in zip(arrays.items(), relative, strict=True)
        ]
        header = msgpack.packb({"format": 1, "tensors": entries})
        if _align(8 + len(header)) == data_start:
            break
        data_start = _align(8 + len(header))
    out = bytearray(data_start + position)
    out[:8] = MAGIC + struct.pack("<I", len(header))
    out[8 : 8 + len(header)] = header
    for entry, array in zip(entries, arrays.values(), strict=True):
        out[entry["offset"] : entry["offset"] + array.nbytes] = array.tobytes()
    return bytes(out)


def write_weights(path: Path, tensors: Mapping[str, np.ndarray]) -> None:
    Path(path).write_bytes(encode_weights(tensors))


def read_slots(buffer: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> dict[str, TensorSlot]:
    """Validate an RCW header and return its tensors' slots; raises FormatError."""
    view = memoryview(buffer)
    if len(view) < 8 or bytes(view[:4]) != MAGIC:
        raise FormatError("not an RCW model file (bad magic)")
    (length,) = struct.unpack("<I", view[4:8])
    if length > min(_MAX_HEADER, len(view) - 8):
        raise FormatError(f"RCW header length {length} does not fit the file")
    try:
        header = msgpack.unpackb(view[8 : 8 + length], raw=False, max_array_len=limits.max_records)
    except (msgpack.exceptions.UnpackException, ValueError, TypeError) as exc:
        raise FormatError(f"RCW header is not valid msgpack: {exc}") from None
    if not isinstance(header, dict) or type(header.get("format")) is not int or header["format"] != 1:
        raise FormatError("RCW header must be {'format': 1, 'tensors': [...]}")
    if not isinstance(header.get("tensors"), list):
        raise FormatError("RCW header must be {'format': 1, 'tensors': [...]}")
    slots = [_read_slot(entry, limits) for entry in header["tensors"]]
    _check_layout(slots, 8 + length, len(view))
    return {slot.name: slot for slot in slots}


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """All tensors of an RCW file as float32 arrays."""
    data = Path(path).read_bytes()
    return {name: slot.view(data).copy() for name, slot in read_slots(data).items()}


def _read_slot(entry: object, limits: Limits) -> TensorSlot:
    if not isinstance(entry, dict) or set(entry) != {"name", "shape", "offset"}:
        raise FormatError("an RCW tensor entry has exactly name, shape and offset")
    if not isinstance(entry["name"], str) or type(entry["offset"]) is not int:
        raise FormatError("an RCW tensor entry needs a string name and an integer offset")
    try:
        shape = read_shape(entry["shape"], limits, entry["name"])
    except UpdateError as exc:
        raise FormatError(f"RCW tensor {entry['name']!r}: {exc}") from None
    return TensorSlot(entry["name"], entry["offset"], shape)


def _check_layout(slots: list[TensorSlot], header_end: int, file_length: int) -> None:
    if len({slot.name for slot in slots}) != len(slots):
        raise FormatError("RCW tensor names must be unique")
    position = header_end
    for slot in sorted(slots, key=lambda s: s.offset):
        if slot.offset % ALIGNMENT or slot.offset < position or slot.offset + slot.nbytes > file_length:
            raise FormatError(f"RCW tensor {slot.name!r} overlaps, is unaligned or runs past the file")
        position = slot.offset + slot.nbytes


def _align(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT
