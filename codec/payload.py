"""The payload: one zstd frame holding a msgpack document of records.

Format 1 is the map {"format": 1, "records": [...]}, each record naming its tensor. Format 2
(codec.compact) refers to the model's tensors by position and needs the model's layout to decode;
writers use it for deltas when they are given the layout, and format 1 for full payloads and when
they are not. Frames are compressed against the format's template dictionary (codec.dictionary) and
always decompressed with the readers' dictionary, which also reads frames made without one.

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

from codec.compact import COMPACT_FORMAT, KEYS, Layout, encode_compact, read_compact
from codec.dictionary import zstd_dictionary
from codec.errors import FormatError, IntegrityError, LimitError, UpdateError
from codec.limits import DEFAULT_LIMITS, KIB, Limits
from codec.msgpack_reads import read_str
from codec.records import FullRecord, Record, record_from_msgpack

PAYLOAD_FORMAT = 1
#: Each format this reader knows, and the number of keys its document map has.
FORMAT_KEYS = {PAYLOAD_FORMAT: 2, COMPACT_FORMAT: 1 + len(KEYS)}
#: Where a document's format number is: after the map's header byte and the 7 bytes of "format".
FORMAT_VALUE_OFFSET = 8
DEFAULT_LEVEL = 19
_WINDOW_LOG = 23  # 8 MiB: the default Limits.max_window_bytes
READ_SIZE = 64 * KIB
#: The longest zstd frame header (ZSTD_FRAMEHEADERSIZE_MAX): all get_frame_parameters reads.
_FRAME_HEADER_MAX = 18


@runtime_checkable
class PayloadSource(Protocol):
    """A payload read as a stream: its length in bytes, and ``read`` as a binary file's."""

    def __len__(self) -> int: ...

    def read(self, size: int = -1) -> bytes: ...


Payload = bytes | bytearray | memoryview | PayloadSource


def encode_document(records: Sequence[Record], layout: Layout | None = None) -> bytes:
    """The uncompressed msgpack document for ``records`` (checked for unique names): format 2 for the
    model ``layout`` when one is given, else format 1, as always for a full record (it needs no model)."""
    if layout is not None and not any(isinstance(record, FullRecord) for record in records):
        return encode_compact(records, layout)
    names = [record.name for record in records]
    if len(set(names)) != len(names):
        raise FormatError("record names must be unique within a payload")
    if any(isinstance(r, FullRecord) for r in records) and len(records) != 1:
        raise FormatError("a payload with a full record must hold exactly that one record")
    document = {"format": PAYLOAD_FORMAT, "records": [record.to_msgpack() for record in records]}
    return msgpack.packb(document, use_bin_type=True)


def compress(document: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """One zstd frame against the document's template dictionary (format 1's alone for a format-1
    document, which readers of format 1 only can then decode), with the content size in its header and
    a window of at most 8 MiB."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(document), write_content_size=1, write_checksum=0
    )
    if params.window_log > _WINDOW_LOG:
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(document), window_log=_WINDOW_LOG, write_content_size=1, write_checksum=0
        )
    compact = document[FORMAT_VALUE_OFFSET : FORMAT_VALUE_OFFSET + 1] == bytes([COMPACT_FORMAT])
    compressor = zstandard.ZstdCompressor(compression_params=params, dict_data=zstd_dictionary(compact))
    return compressor.compress(document)


def encode_payload(
    records: Sequence[Record], level: int = DEFAULT_LEVEL, layout: Layout | None = None
) -> tuple[bytes, int]:
    """Compressed payload bytes and the decompressed length the manifest must declare; format 2 for the
    model ``layout`` when one is given (records then refer to tensors by position), else (and for a full
    record) format 1."""
    document = encode_document(records, layout)
    return compress(document, level), len(document)


def iter_records(
    payload: Payload, decompressed_length: int, limits: Limits = DEFAULT_LIMITS, layout: Layout | None = None
) -> Iterator[Record]:
    """Yield the payload's records one at a time, validating everything against ``limits``.

    A format-2 payload needs ``layout``, the tensors of the model file it applies to, in file order
    (codec.model_files.read_model_slots); a format-1 payload ignores it. Raises FormatError,
    LimitError, IntegrityError or ModelMismatchError; never anything else for hostile bytes.
    """
    stream = BoundedDecompressor(payload, decompressed_length, limits)
    unpacker = msgpack.Unpacker(
        stream, read_size=READ_SIZE, max_buffer_size=limits.max_record_bytes + READ_SIZE,
        max_str_len=4 * limits.max_name_length, max_bin_len=limits.max_record_bytes + READ_SIZE,
        max_array_len=max(limits.max_records, limits.max_dims), max_map_len=16, max_ext_len=0,
        raw=False, strict_map_key=True, use_list=True,
    )
    with decoding_errors(limits):
        if read_format(unpacker) == COMPACT_FORMAT:
            if layout is None:
                raise FormatError("this payload (format 2) refers to the model's tensors by position: "
                                  "decoding it needs the model file it applies to")
            yield from read_compact(unpacker, layout, limits)
            expect_end(unpacker, stream)
            return
        count = read_records_header(unpacker, limits)
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


def decode_payload(
    payload: Payload, decompressed_length: int, limits: Limits = DEFAULT_LIMITS, layout: Layout | None = None
) -> list[Record]:
    """All records of a payload (for tools; devices use iter_records to hold one at a time)."""
    return list(iter_records(payload, decompressed_length, limits, layout))


def payload_format(payload: Payload, decompressed_length: int, limits: Limits = DEFAULT_LIMITS) -> int:
    """The format number of a payload's document (only its first bytes are decompressed)."""
    unpacker = msgpack.Unpacker(BoundedDecompressor(payload, decompressed_length, limits), read_size=64,
                                max_buffer_size=READ_SIZE)
    with decoding_errors(limits):
        return read_format(unpacker)


def read_format(unpacker: msgpack.Unpacker) -> int:
    """Read a document's map header, its "format" key and its format number (1 or 2), which is returned.

    Read typed, so hostile bytes here cost no more memory than their length.
    """
    keys = unpacker.read_map_header()
    if read_str(unpacker, 16) != "format":
        raise FormatError("a payload document is a map whose first key is 'format'")
    marker = unpacker.read_bytes(1)
    if not marker or marker[0] not in FORMAT_KEYS:  # a positive fixint is its own one-byte encoding
        raise FormatError(f"payload format 0x{marker.hex() or 'end'} is not supported (this reader knows "
                          f"{' and '.join(map(str, FORMAT_KEYS))}); update the device's rankcast")
    if keys != FORMAT_KEYS[marker[0]]:
        raise FormatError(f"a format-{marker[0]} payload document has {FORMAT_KEYS[marker[0]]} keys, not {keys}")
    return marker[0]


def read_header(unpacker: msgpack.Unpacker, limits: Limits) -> int:
    """Read {"format": 1, "records": [ up to the first record; returns the record count."""
    if read_format(unpacker) != PAYLOAD_FORMAT:
        raise FormatError("a full payload is a format-1 document")
    return read_records_header(unpacker, limits)


def read_records_header(unpacker: msgpack.Unpacker, limits: Limits) -> int:
    """After a format-1 document's format: its "records" key and array header; returns the record count."""
    if read_str(unpacker, 16) != "records":
        raise FormatError("a payload document's second key must be 'records'")
    count = unpacker.read_array_header()
    if count > limits.max_records:
        raise LimitError(f"{count} records exceed the limit of {limits.max_records}")
    return count


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
        decompressor = zstandard.ZstdDecompressor(
            dict_data=zstd_dictionary(compact=True), max_window_size=limits.max_window_bytes
        )
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
