"""Model files told apart by their content: RCW (b"RCW1" at bytes 0-4) or TFLite (b"TFL3" at bytes 4-8).

Every caller of codec.apply (a device's store, the publisher building a release against a deployed
file) finds a file's tensors the same way, without a flag saying which kind of file it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from codec.errors import FormatError
from codec.limits import DEFAULT_LIMITS, Limits
from codec.weights import MAGIC as RCW_MAGIC
from codec.weights import SlotReader, TensorSlot, read_slots

RCW = "rcw"
TFLITE = "tflite"
TFLITE_IDENTIFIER = b"TFL3"
#: The file name suffix of each kind, as devices store them.
SUFFIXES = {RCW: ".rcw", TFLITE: ".tflite"}


def model_kind(buffer: bytes | memoryview) -> str | None:
    """"rcw", "tflite", or None when the bytes are neither."""
    head = bytes(buffer[:8])
    if head[:4] == RCW_MAGIC:
        return RCW
    if head[4:8] == TFLITE_IDENTIFIER:
        return TFLITE
    return None


def file_kind(path: Path) -> str | None:
    """The kind of the model file at ``path`` (reads its first 8 bytes)."""
    with open(path, "rb") as handle:
        return model_kind(handle.read(8))


def model_suffix(buffer: bytes | memoryview, default: str = SUFFIXES[RCW]) -> str:
    """".rcw" or ".tflite" by content; ``default`` for bytes of neither kind."""
    return SUFFIXES.get(model_kind(buffer), default)


def slot_reader_for(buffer: bytes | memoryview) -> SlotReader:
    """The slot reader for this kind of file; raises FormatError for bytes of neither kind."""
    kind = model_kind(buffer)
    if kind == RCW:
        return read_slots
    if kind == TFLITE:
        from codec.tflite import tflite_slots

        return tflite_slots
    raise FormatError("the model file is neither RCW (magic RCW1) nor TFLite (identifier TFL3)")


def read_model_slots(buffer: memoryview, limits: Limits = DEFAULT_LIMITS) -> Mapping[str, TensorSlot]:
    """A SlotReader for RCW and .tflite files alike (a .tflite needs its embedded rankcast.binding)."""
    return slot_reader_for(buffer)(buffer, limits)
