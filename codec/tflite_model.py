"""What a device needs to know about a .tflite file: where each buffer's bytes are, and the tensors.

Reads the TFLite schema's Model table (file identifier "TFL3") with the bounded reader of
codec.tflite_flatbuffer: every buffer's data as an absolute (offset, length) span in the file, the
tensors of the first subgraph (name, shape, type, buffer index) and the metadata entries. Field
numbers are those of the TFLite schema (tensorflow/lite/schema/schema.fbs).
"""

from __future__ import annotations

from dataclasses import dataclass

from codec.errors import FormatError
from codec.tflite_flatbuffer import Table, root_table

FILE_IDENTIFIER = b"TFL3"
FLOAT32 = 0  # TensorType.FLOAT32

# Field slots of the schema's tables.
_MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA = 2, 4, 6
_SUBGRAPH_TENSORS = 0
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_BUFFER, _TENSOR_NAME = 0, 1, 2, 3
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_METADATA_NAME, _METADATA_BUFFER = 0, 1


@dataclass(frozen=True)
class BufferSpan:
    """Where one buffer's bytes lie in the file (length 0: the buffer holds no data)."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class TFLiteTensor:
    """A tensor of the first subgraph as the file declares it (the shape is not yet validated)."""

    name: str
    shape: tuple[int, ...]
    type: int
    buffer: int


@dataclass(frozen=True)
class TFLiteModel:
    """The parts of a .tflite file that locate weights: buffers, first-subgraph tensors, metadata."""

    buffers: tuple[BufferSpan, ...]
    tensors: tuple[TFLiteTensor, ...]
    metadata: dict[str, int]

    def data_of(self, tensor: int) -> BufferSpan:
        """The span of the buffer behind tensor ``tensor``; raises FormatError for a bad index."""
        if not 0 <= tensor < len(self.tensors):
            raise FormatError(f"tensor index {tensor} is outside the model's {len(self.tensors)} tensors")
        buffer = self.tensors[tensor].buffer
        if buffer >= len(self.buffers):
            raise FormatError(f"tensor {tensor} names buffer {buffer}; the file has {len(self.buffers)}")
        return self.buffers[buffer]


def parse_tflite(data: bytes | memoryview) -> TFLiteModel:
    """Parse a .tflite file's buffers, first-subgraph tensors and metadata; raises FormatError."""
    view = memoryview(data)
    try:
        return _parse(view)
    finally:
        view.release()  # no view of a memory-mapped file outlives the parse, not even in a traceback


def _parse(view: memoryview) -> TFLiteModel:
    if len(view) < 8 or bytes(view[4:8]) != FILE_IDENTIFIER:
        raise FormatError("not a TFLite model file (the FlatBuffer identifier is not TFL3)")
    model = root_table(view)
    subgraphs = model.tables(_MODEL_SUBGRAPHS)
    if not subgraphs:
        raise FormatError("the TFLite model has no subgraph")
    buffers = tuple(_buffer_span(table, len(view)) for table in model.tables(_MODEL_BUFFERS))
    tensors = tuple(_tensor(table) for table in subgraphs[0].tables(_SUBGRAPH_TENSORS))
    metadata = {}
    for entry in model.tables(_MODEL_METADATA):
        name = entry.string(_METADATA_NAME)
        if name in metadata:
            raise FormatError(f"the TFLite model has two metadata entries named {name!r}")
        metadata[name] = int(entry.scalar(_METADATA_BUFFER, "<I", 0))
    return TFLiteModel(buffers, tensors, metadata)


def _tensor(table: Table) -> TFLiteTensor:
    return TFLiteTensor(
        name=table.string(_TENSOR_NAME),
        shape=tuple(table.ints(_TENSOR_SHAPE, "<i")),
        type=int(table.scalar(_TENSOR_TYPE, "<b", 0)),
        buffer=int(table.scalar(_TENSOR_BUFFER, "<I", 0)),
    )


def _buffer_span(table: Table, file_length: int) -> BufferSpan:
    found = table.vector(_BUFFER_DATA, 1)
    if found is not None:
        return BufferSpan(*found)
    offset = int(table.scalar(_BUFFER_OFFSET, "<Q", 0))
    if offset <= 1:  # the schema's "only valid if > 1": no data outside the FlatBuffer either
        return BufferSpan(0, 0)
    size = int(table.scalar(_BUFFER_SIZE, "<Q", 0))
    if offset + size > file_length:
        raise FormatError(f"a TFLite buffer of {size} bytes at {offset} runs past the {file_length}-byte file")
    return BufferSpan(offset, size)
