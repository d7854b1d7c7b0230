"""A full payload streamed straight into a file: the model file it carries is never held in memory.

A full payload's document is {"format": 1, "records": [{"kind": "full", "name": str, "data": bin}]}
(docs/format.md sections 2 and 3). Decoding it with the record reader would hold the whole model file
(and msgpack's copy of it) in memory; here the bin is copied from the decompressed stream to the file
in pieces of PIECE bytes. The keys, the kind and the name are read as msgpack strings of bounded length
(nothing else is decoded, so no value can cost more memory than its bytes), and the rest is checked as
codec.payload checks it: the header, the record's size against ``max_record_bytes``, the declared
length and nothing after the document.
"""

from __future__ import annotations

from typing import BinaryIO

import msgpack

from codec.errors import FormatError, LimitError
from codec.limits import MIB, Limits
from codec.msgpack_reads import read_bin_length, read_str
from codec.payload import (
    PAYLOAD_FORMAT,
    READ_SIZE,
    BoundedDecompressor,
    Payload,
    decoding_errors,
    expect_end,
    read_format,
    read_header,
    read_records_header,
)
from codec.records import read_name

#: Bytes copied at a time from the decompressed stream to the file.
PIECE = 1 * MIB
_FULL_KEYS = {"kind", "name", "data"}


def starts_with_full_record(payload: Payload, decompressed_length: int, limits: Limits) -> bool:
    """Whether the payload's first record is a full record (decodes only up to where that shows).

    Only the record's leading keys, its kind and its name are read; at the first other key (a delta's)
    the answer is no, and the records' decoder reports whatever else is wrong.
    """
    with decoding_errors(limits):
        unpacker = _unpacker(BoundedDecompressor(payload, decompressed_length, limits), limits)
        if read_format(unpacker) != PAYLOAD_FORMAT or read_records_header(unpacker, limits) < 1 \
                or unpacker.read_map_header() < 1:
            return False
        for _ in range(len(_FULL_KEYS)):
            key = read_str(unpacker, 4 * limits.max_name_length)
            if key == "data":
                return True  # only a full record has data at its top level
            if key not in _FULL_KEYS:
                return False
            value = read_str(unpacker, 4 * limits.max_name_length)
            if key == "kind":
                return value == "full"
        return False


def write_full_record(payload: Payload, decompressed_length: int, limits: Limits, out: BinaryIO) -> str:
    """Copy the payload's one full record's data to ``out``; returns the record's name.

    Raises FormatError, LimitError or IntegrityError, as codec.payload.iter_records would, for anything
    but a document of exactly one full record; ``out`` may then hold part of the data.
    """
    with decoding_errors(limits):
        stream = BoundedDecompressor(payload, decompressed_length, limits)
        unpacker = _unpacker(stream, limits)
        count = read_header(unpacker, limits)
        if count != 1:
            raise FormatError(f"the payload holds {count} records, not a full record (one whole model file)")
        record_start = unpacker.tell()
        if unpacker.read_map_header() != len(_FULL_KEYS):
            raise FormatError(f"a full record must have exactly the keys {sorted(_FULL_KEYS)}")
        seen: dict[str, object] = {}
        for _ in range(len(_FULL_KEYS)):
            key = read_str(unpacker, 4 * limits.max_name_length)
            if key not in _FULL_KEYS or key in seen:
                raise FormatError(f"a full record must have exactly the keys {sorted(_FULL_KEYS)}")
            if key == "data":
                seen[key] = _copy_bin(unpacker, limits.max_record_bytes - (unpacker.tell() - record_start), out)
            else:
                seen[key] = read_str(unpacker, 4 * limits.max_name_length)
            if key == "kind" and seen[key] != "full":
                raise FormatError(f"the payload's record is {seen[key]!r:.40}, not a full record")
        size = unpacker.tell() - record_start
        if size > limits.max_record_bytes:
            raise LimitError(f"a record of {size} bytes exceeds the limit of {limits.max_record_bytes}")
        name = read_name(seen["name"], limits)
        expect_end(unpacker, stream)
        return name


def _copy_bin(unpacker: msgpack.Unpacker, room: int, out: BinaryIO) -> int:
    """Copy a msgpack bin of at most ``room`` bytes (header included) from the stream to ``out`` in
    pieces; returns its length."""
    start = unpacker.tell()
    length = read_bin_length(unpacker, "full record's data")
    if length == 0:
        raise FormatError("a full record's data must be non-empty bytes")
    if unpacker.tell() - start + length > room:
        raise LimitError(f"a full record's data of {length} bytes exceeds the record limit")
    left = length
    while left:
        piece = unpacker.read_bytes(min(left, PIECE))
        if not piece:
            raise FormatError("the payload ends in the middle of its document (truncated?)")
        out.write(piece)
        left -= len(piece)
    return length


def _unpacker(stream: BoundedDecompressor, limits: Limits) -> msgpack.Unpacker:
    return msgpack.Unpacker(stream, read_size=READ_SIZE, max_buffer_size=PIECE + READ_SIZE,
                            max_str_len=4 * limits.max_name_length, max_bin_len=PIECE, max_array_len=1 << 16,
                            max_map_len=16, max_ext_len=0, raw=False, strict_map_key=True, use_list=True)
