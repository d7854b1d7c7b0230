"""Typed reads from a msgpack Unpacker: a string, a bin's length or an unsigned integer, each read on its
own so that hostile bytes cost no more memory than a limit checked before anything is allocated."""

from __future__ import annotations

import msgpack

from codec.errors import FormatError, LimitError

_STR_LENGTH_BYTES = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_BIN_LENGTH_BYTES = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_UINT_BYTES = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXSTR_FIRST, _FIXSTR_LAST = 0xA0, 0xBF
_TRUNCATED = "the payload ends in the middle of its document (truncated?)"


def read_exactly(unpacker: msgpack.Unpacker, length: int) -> bytes:
    """The next ``length`` raw bytes; FormatError when the document ends first. (One ``read_bytes`` may
    return fewer: past the unpacker's buffer it makes a single read of the stream.)"""
    pieces, left = [], length
    while left:
        piece = unpacker.read_bytes(left)
        if not piece:
            raise FormatError(_TRUNCATED)
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


def read_str(unpacker: msgpack.Unpacker, max_bytes: int) -> str:
    """A msgpack string of at most ``max_bytes`` bytes."""
    marker = read_exactly(unpacker, 1)[0]
    if _FIXSTR_FIRST <= marker <= _FIXSTR_LAST:
        length = marker - _FIXSTR_FIRST
    elif marker in _STR_LENGTH_BYTES:
        length = int.from_bytes(read_exactly(unpacker, _STR_LENGTH_BYTES[marker]), "big")
    else:
        raise FormatError("the payload's document has a non-string where a key or name belongs")
    if length > max_bytes:
        raise LimitError(f"a string of {length} bytes exceeds the limit of {max_bytes}")
    return read_exactly(unpacker, length).decode("utf-8")


def read_bin_length(unpacker: msgpack.Unpacker, what: str) -> int:
    """The length of the msgpack bin that follows (its bytes are left to read)."""
    marker = read_exactly(unpacker, 1)[0]
    if marker not in _BIN_LENGTH_BYTES:
        raise FormatError(f"the payload's {what} must be a msgpack bin")
    return int.from_bytes(read_exactly(unpacker, _BIN_LENGTH_BYTES[marker]), "big")


def read_uint(unpacker: msgpack.Unpacker, what: str) -> int:
    """A non-negative msgpack integer (positive fixint or uint 8/16/32/64)."""
    marker = read_exactly(unpacker, 1)[0]
    if marker < 0x80:
        return marker
    if marker not in _UINT_BYTES:
        raise FormatError(f"the payload's {what} must be a non-negative integer")
    return int.from_bytes(read_exactly(unpacker, _UINT_BYTES[marker]), "big")
