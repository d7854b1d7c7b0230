"""The payload: one zstd frame holding the msgpack map {"format": 1, "records": [...]}.

Frames are compressed against the format's template dictionary (codec.dictionary) and always
decompressed with it, which also reads frames made without it.

Encoding builds the whole document; decoding streams it, record by record, so a reader holds at most
one record in memory and stops the moment the decompressed bytes pass the declared length. A payload
is given as bytes or as a ``PayloadSource``: a readable stream that knows its length (a device reads
its spooled chunks that way, without putting them together first).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import msgpack
import zstandard

from codec.dictionary import zstd_dictionary
from codec.errors import FormatError, IntegrityError, LimitError, UpdateError
from codec.limits import DEFAULT_LIMITS, KIB, Limits
from codec.records import FullRecord, Record, record_from_msgpack

PAYLOAD_FORMAT = 1
DEFAULT_LEVEL = 19
_WINDOW_LOG = 23  # 8 MiB: the default Limits.max_window_bytes
READ_SIZE = 64 * KIB
#: The longest zstd frame header (ZSTD_FRAMEHEADERSIZE_MAX): all get_frame_parameters reads.
_FRAME_HEADER_MAX = 18
_STR_LENGTH_BYTES = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_FIXSTR_FIRST, _FIXSTR_LAST = 0xA0, 0xBF


@runtime_checkable
class PayloadSource(Protocol):
    """A payload read as a stream: its length in bytes, and ``read`` as a binary file's."""

    def __len__(self) -> int: ...

    def read(self, size: int = -1) -> bytes: ...


Payload = bytes | bytearray | memoryview | PayloadSource


def encode_document(records: Sequence[Record]) -> bytes:
    """The uncompressed msgpack document for ``records`` (checked for unique names)."""
    names = [record.name for record in records]
    if len(set(names)) != len(names):
        raise FormatError("record names must be unique within a payload")
    if any(isinstance(r, FullRecord) for r in records) and len(records) != 1:
        raise FormatError("a payload with a full record must hold exactly that one record")
    document = {"format": PAYLOAD_FORMAT, "records": [record.to_msgpack() for record in records]}
    return msgpack.packb(document, use_bin_type=True)


def compress(document: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """One zstd frame against the template dictionary, with the content size in its header and a window
    of at most 8 MiB."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(document), write_content_size=1, write_checksum=0
    )
    if params.window_log > _WINDOW_LOG:
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(document), window_log=_WINDOW_LOG, write_content_size=1, write_checksum=0
        )
    compressor = zstandard.ZstdCompressor(compression_params=params, dict_data=zstd_dictionary())
    return compressor.compress(document)


def encode_payload(records: Sequence[Record], level: int = DEFAULT_LEVEL) -> tuple[bytes, int]:
    """Compressed payload bytes and the decompressed length the manifest must declare."""
    document = encode_document(records)
    return compress(document, level), len(document)


def iter_records(
    payload: Payload, decompressed_length: int, limits: Limits = DEFAULT_LIMITS
) -> Iterator[Record]:
    """Yield the payload's records one at a time, validating everything against ``limits``.

    Raises FormatError, LimitError or IntegrityError; never anything else for hostile bytes.
    """
    stream = BoundedDecompressor(payload, decompressed_length, limits)
    unpacker = msgpack.Unpacker(
        stream, read_size=READ_SIZE, max_buffer_size=limits.max_record_bytes + READ_SIZE,
        max_str_len=4 * limits.max_name_length, max_bin_len=limits.max_record_bytes + READ_SIZE,
        max_array_len=max(limits.max_records, limits.max_dims), max_map_len=16, max_ext_len=0,
        raw=False, strict_map_key=True, use_list=True,
    )
    with decoding_errors(limits):
        count = read_header(unpacker, limits)
        names: set[str] = set()
        for _ in range(count):
            start = unpacker.tell()
            obj = unpacker.unpack()
            if unpacker.tell() - start > limits.max_record_bytes:
                raise LimitError(f"a record of {unpacker.tell() - start} bytes exceeds the limit of "
                                 f"{limits.max_record_bytes}")
            record = record_from_msgpack(obj, limits)
            if isinstance(record, FullRecord) and count != 1:
                raise FormatError("a payload with a full record must hold exactly that one record")
            if record.name in names:
                raise FormatError(f"record name {record.name!r} appears twice; names are unique within a payload")
            names.add(record.name)
            yield record
        expect_end(unpacker, stream)


@contextmanager
def decoding_errors(limits: Limits) -> Iterator[None]:
    """Within: what msgpack raises on hostile bytes becomes the codec's FormatError or LimitError."""
    try:
        yield
    except UpdateError:
        raise
    except msgpack.OutOfData:
        raise FormatError("the payload ends in the middle of its document (truncated?)") from None
    except msgpack.exceptions.BufferFull:
        raise LimitError(f"a record exceeds the limit of {limits.max_record_bytes} bytes") from None
    except (msgpack.exceptions.UnpackException, ValueError, TypeError) as exc:
        raise FormatError(f"the payload is not a valid msgpack document: {exc}") from None


def decode_payload(payload: Payload, decompressed_length: int, limits: Limits = DEFAULT_LIMITS) -> list[Record]:
    """All records of a payload (for tools; devices use iter_records to hold one at a time)."""
    return list(iter_records(payload, decompressed_length, limits))


def read_header(unpacker: msgpack.Unpacker, limits: Limits) -> int:
    """Read {"format": 1, "records": [ up to the first record; returns the record count.

    The keys and the version are read typed, so hostile bytes here cost no more memory than their length.
    """
    if unpacker.read_map_header() != 2 or read_str(unpacker, limits) != "format":
        raise FormatError("a payload document is a map whose first key is 'format'")
    marker = unpacker.read_bytes(1)
    if not marker or marker[0] != PAYLOAD_FORMAT:  # a positive fixint is its own one-byte encoding
        raise FormatError(f"payload format 0x{marker.hex() or 'end'} is not supported (this reader knows "
                          f"{PAYLOAD_FORMAT})")
    if read_str(unpacker, limits) != "records":
        raise FormatError("a payload document's second key must be 'records'")
    count = unpacker.read_array_header()
    if count > limits.max_records:
        raise LimitError(f"{count} records exceed the limit of {limits.max_records}")
    return count


def read_str(unpacker: msgpack.Unpacker, limits: Limits) -> str:
    """A msgpack string of at most 4 × max_name_length bytes, read without decoding anything else."""
    marker = unpacker.read_bytes(1)
    if not marker:
        raise FormatError("the payload ends in the middle of its document (truncated?)")
    if _FIXSTR_FIRST <= marker[0] <= _FIXSTR_LAST:
        length = marker[0] - _FIXSTR_FIRST
    elif marker[0] in _STR_LENGTH_BYTES:
        size_bytes = unpacker.read_bytes(_STR_LENGTH_BYTES[marker[0]])
        length = int.from_bytes(size_bytes, "big")
    else:
        raise FormatError("the payload's document has a non-string where a key or name belongs")
    if length > 4 * limits.max_name_length:
        raise LimitError(f"a string of {length} bytes exceeds the limit of {4 * limits.max_name_length}")
    data = unpacker.read_bytes(length)
    if len(data) != length:
        raise FormatError("the payload ends in the middle of its document (truncated?)")
    return data.decode("utf-8")


def expect_end(unpacker: msgpack.Unpacker, stream: BoundedDecompressor) -> None:
    """Nothing may follow the document (checked by reading a byte, not by decoding what follows)."""
    document_end = unpacker.tell()
    if unpacker.read_bytes(1):
        raise FormatError("the payload has data after its document")
    stream.check_complete(document_end)


class BoundedDecompressor(io.RawIOBase):
    """A readable stream of the decompressed payload that refuses to pass the declared length."""

    def __init__(self, payload: Payload, declared: int, limits: Limits) -> None:
        super().__init__()
        if len(payload) > limits.max_payload_bytes:
            raise LimitError(f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}")
        if not 0 < declared <= limits.max_decompressed_bytes:
            raise LimitError(f"declared decompressed length {declared} is outside 1..{limits.max_decompressed_bytes}")
        if isinstance(payload, PayloadSource):
            head = payload.read(_FRAME_HEADER_MAX)
            payload = _Prefixed(head, payload)
        else:
            head = bytes(payload[:_FRAME_HEADER_MAX])
        try:
            frame = zstandard.get_frame_parameters(head)
        except zstandard.ZstdError as exc:
            raise FormatError(f"the payload is not a zstd frame: {exc}") from None
        if frame.window_size > limits.max_window_bytes:
            raise LimitError(f"zstd window of {frame.window_size} bytes exceeds {limits.max_window_bytes}")
        if frame.content_size not in (zstandard.CONTENTSIZE_UNKNOWN, declared):
            raise IntegrityError(f"zstd frame says {frame.content_size} bytes, the manifest {declared}")
        decompressor = zstandard.ZstdDecompressor(dict_data=zstd_dictionary(), max_window_size=limits.max_window_bytes)
        self._reader = decompressor.stream_reader(payload, read_across_frames=False)
        self._declared = declared
        self._produced = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = READ_SIZE if size is None or size < 0 else min(size, READ_SIZE)
        try:
            piece = self._reader.read(size)
        except zstandard.ZstdError as exc:
            raise FormatError(f"the payload's zstd data is corrupt: {exc}") from None
        self._produced += len(piece)
        if self._produced > self._declared:
            raise LimitError(f"the payload decompresses past its declared {self._declared} bytes")
        return piece

    def check_complete(self, document_end: int) -> None:
        """At the end of the stream: exactly the declared bytes, and the document ended at the last one."""
        if self._produced != self._declared or self.read(1):
            raise IntegrityError(
                f"the payload decompressed to {self._produced} bytes, the manifest declares {self._declared}"
            )
        if document_end != self._produced:  # an incomplete msgpack object after the document
            raise FormatError("the payload has data after its document")


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read (``head``), then the rest of ``source``."""

    def __init__(self, head: bytes, source: PayloadSource) -> None:
        super().__init__()
        self._head, self._source = head, source

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            piece = self._head if size is None or size < 0 else self._head[:size]
            self._head = self._head[len(piece):]
            return piece
        return self._source.read(size)

    def readinto(self, buffer) -> int:  # noqa: ANN001 - the buffer protocol
        piece = self.read(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)
