"""Unsigned LEB128 integers: seven bits a byte, least significant group first, high bit "more follows".

Readers accept only the minimal encoding (no final 0x00 group after the first byte) of values below
2^64, at most ten bytes: a number has exactly one encoding, so equal documents have equal bytes.
"""

from __future__ import annotations

from codec.errors import FormatError

MAX_VALUE = 2**64 - 1
MAX_BYTES = 10


def encode_uvarint(value: int) -> bytes:
    """The minimal LEB128 bytes of an integer in 0..2^64-1."""
    if type(value) is not int or not 0 <= value <= MAX_VALUE:
        raise FormatError(f"a LEB128 number must be an integer in 0..2^64-1, got {value!r:.40}")
    out = bytearray()
    while True:
        group, value = value & 0x7F, value >> 7
        out.append(group | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_uvarint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    """The number starting at ``data[offset]`` and the offset after it; FormatError when it is truncated,
    longer than ten bytes, not minimal or above 2^64-1."""
    value = shift = 0
    for index in range(offset, min(len(data), offset + MAX_BYTES)):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and index > offset:
                raise FormatError(f"{what}: a LEB128 number is not in its shortest form")
            if value > MAX_VALUE:
                raise FormatError(f"{what}: a LEB128 number exceeds 2^64-1")
            return value, index + 1
        shift += 7
    if len(data) < offset + MAX_BYTES:
        raise FormatError(f"{what}: the data ends inside a LEB128 number")
    raise FormatError(f"{what}: a LEB128 number is longer than {MAX_BYTES} bytes")
