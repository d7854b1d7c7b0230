"""Bounded reading of FlatBuffers tables from untrusted bytes.

Just what parsing a .tflite file needs: tables, scalars, strings and vectors. Every position is
checked against the file before it is read, so hostile bytes raise FormatError and nothing else.
The wire rules are the FlatBuffers binary format: little-endian, a table starts with a signed offset
to its vtable, a vtable lists each field's offset inside the table, and offsets to tables, vectors
and strings are unsigned and relative to where they are stored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from codec.errors import FormatError


@dataclass(frozen=True)
class Table:
    """One table inside ``data``: its position and the bounds of its vtable and inline part."""

    data: memoryview
    position: int
    vtable: int
    vtable_size: int
    inline_size: int

    def scalar(self, slot: int, fmt: str, default: int | float) -> int | float:
        """A scalar field (``fmt`` is a struct code such as "<i" or "<B") or its default."""
        offset = self._field(slot)
        if offset == 0:
            return default
        if offset + struct.calcsize(fmt) > self.inline_size:
            raise FormatError(f"a FlatBuffers field at {self.position + offset} runs past its table")
        return struct.unpack_from(fmt, self.data, self.position + offset)[0]

    def table(self, slot: int) -> Table | None:
        target = self._reference(slot)
        return None if target is None else table_at(self.data, target)

    def vector(self, slot: int, element_size: int) -> tuple[int, int] | None:
        """(position of the first element, element count) of a vector field, checked to fit the file."""
        target = self._reference(slot)
        return None if target is None else vector_at(self.data, target, element_size)

    def tables(self, slot: int) -> list[Table]:
        """The tables of a vector-of-tables field (empty if absent)."""
        found = self.vector(slot, 4)
        if found is None:
            return []
        start, count = found
        return [table_at(self.data, _follow(self.data, start + 4 * i)) for i in range(count)]

    def ints(self, slot: int, fmt: str) -> tuple[int, ...]:
        """A vector of fixed-size integers (``fmt`` such as "<i"), empty if absent."""
        size = struct.calcsize(fmt)
        found = self.vector(slot, size)
        if found is None:
            return ()
        start, count = found
        return struct.unpack_from(f"<{count}{fmt[-1]}", self.data, start)

    def string(self, slot: int) -> str:
        """A UTF-8 string field ("" if absent)."""
        found = self.vector(slot, 1)
        if found is None:
            return ""
        start, count = found
        try:
            return bytes(self.data[start : start + count]).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"the string at {start} is not UTF-8") from None

    def _field(self, slot: int) -> int:
        entry = 4 + 2 * slot
        if entry + 2 > self.vtable_size:
            return 0
        offset = struct.unpack_from("<H", self.data, self.vtable + entry)[0]
        if offset and offset < 4:
            raise FormatError(f"a FlatBuffers vtable at {self.vtable} points a field into its table's header")
        return offset

    def _reference(self, slot: int) -> int | None:
        offset = self._field(slot)
        if offset == 0:
            return None
        if offset + 4 > self.inline_size:
            raise FormatError(f"a FlatBuffers field at {self.position + offset} runs past its table")
        return _follow(self.data, self.position + offset)


def root_table(data: memoryview) -> Table:
    """The root table of a FlatBuffer (its first four bytes hold the offset to it)."""
    return table_at(data, _follow(data, 0))


def table_at(data: memoryview, position: int) -> Table:
    """The table at ``position``, with its vtable and inline part checked to lie inside ``data``."""
    _need(data, position, 4)
    vtable = position - struct.unpack_from("<i", data, position)[0]
    _need(data, vtable, 4)
    vtable_size, inline_size = struct.unpack_from("<HH", data, vtable)
    if vtable_size < 4 or vtable_size % 2 or inline_size < 4:
        raise FormatError(f"the FlatBuffers vtable at {vtable} has impossible sizes")
    _need(data, vtable, vtable_size)
    _need(data, position, inline_size)
    return Table(data, position, vtable, vtable_size, inline_size)


def vector_at(data: memoryview, position: int, element_size: int) -> tuple[int, int]:
    """(first element, count) of the vector whose length prefix is at ``position``."""
    _need(data, position, 4)
    count = struct.unpack_from("<I", data, position)[0]
    _need(data, position + 4, count * element_size)
    return position + 4, count


def _follow(data: memoryview, position: int) -> int:
    _need(data, position, 4)
    return position + struct.unpack_from("<I", data, position)[0]


def _need(data: memoryview, position: int, size: int) -> None:
    if position < 0 or position + size > len(data):
        raise FormatError(f"{size} bytes at {position} lie outside the {len(data)}-byte TFLite file")
