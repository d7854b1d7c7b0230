"""The binding: which TFLite tensor holds each PyTorch parameter, and in which axis order.

It travels inside the .tflite file as the metadata entry "rankcast.binding", whose buffer holds the
msgpack map (docs/tflite.md)::

    {"format": 1, "tensors": [{"name": str, "tensor": int, "buffer": int,
                               "shape": [int, ...], "permutation": [int, ...]}, ...]}

``name`` is the PyTorch parameter name, which update records use; ``tensor`` indexes the first
subgraph's tensors and ``buffer`` the model's buffers (it must be that tensor's buffer); ``shape`` is
the logical (PyTorch) shape; the stored array is ``numpy.transpose(logical, permutation)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from codec.arrays import read_shape
from codec.errors import FormatError
from codec.limits import DEFAULT_LIMITS, Limits

METADATA_NAME = "rankcast.binding"
BINDING_FORMAT = 1
#: TFLite's kernel layouts as permutations of PyTorch's OIHW: CONV_2D stores OHWI, DEPTHWISE_CONV_2D
#: stores a (C·M, 1, H, W) kernel as [1, H, W, C·M].
CONV_LAYOUT, DEPTHWISE_LAYOUT = (0, 2, 3, 1), (1, 2, 3, 0)
_ENTRY_KEYS = {"name", "tensor", "buffer", "shape", "permutation"}
_AXIS_NAMES = {1: "O", 2: "OI", 4: "OIHW"}


@dataclass(frozen=True)
class BoundTensor:
    """One PyTorch parameter and the TFLite tensor that stores it."""

    name: str
    tensor: int
    buffer: int
    shape: tuple[int, ...]
    permutation: tuple[int, ...]

    @property
    def stored_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[axis] for axis in self.permutation)

    @property
    def layout(self) -> str:
        """The axis order as PyTorch axis letters, for example "OIHW -> OHWI" for a convolution."""
        names = _AXIS_NAMES.get(len(self.shape), "abcdefgh"[: len(self.shape)])
        return f"{names} -> {''.join(names[axis] for axis in self.permutation)}"

    def to_msgpack(self) -> dict:
        return {
            "name": self.name, "tensor": self.tensor, "buffer": self.buffer,
            "shape": list(self.shape), "permutation": list(self.permutation),
        }


@dataclass(frozen=True)
class Binding:
    """Every bound parameter of a model, in file order of the weights."""

    tensors: tuple[BoundTensor, ...]

    def to_bytes(self) -> bytes:
        entries = [entry.to_msgpack() for entry in self.tensors]
        return msgpack.packb({"format": BINDING_FORMAT, "tensors": entries}, use_bin_type=True)

    def summary(self) -> str:
        """One line per parameter: name, layout, logical shape, TFLite tensor and buffer."""
        return "\n".join(
            f"{entry.name:<32} {entry.layout:<14} {'x'.join(map(str, entry.shape)):<16} "
            f"tensor {entry.tensor} buffer {entry.buffer}"
            for entry in self.tensors
        )


def binding_from_bytes(data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> Binding:
    """Validate and decode a binding's msgpack bytes; raises FormatError or LimitError."""
    try:
        document = msgpack.unpackb(
            bytes(data), raw=False, strict_map_key=True, max_array_len=max(limits.max_records, limits.max_dims),
            max_map_len=len(_ENTRY_KEYS), max_str_len=4 * limits.max_name_length, max_bin_len=0, max_ext_len=0,
        )
    except (msgpack.exceptions.UnpackException, ValueError, TypeError) as exc:
        raise FormatError(f"the TFLite binding is not valid msgpack: {exc}") from None
    if not isinstance(document, dict) or set(document) != {"format", "tensors"} \
            or type(document["format"]) is not int or document["format"] != BINDING_FORMAT \
            or not isinstance(document["tensors"], list):
        raise FormatError(f"a TFLite binding is {{'format': {BINDING_FORMAT}, 'tensors': [...]}}")
    entries = tuple(_entry(item, limits) for item in document["tensors"])
    if len({entry.name for entry in entries}) != len(entries):
        raise FormatError("the TFLite binding names a parameter twice")
    return Binding(entries)


def _entry(item: object, limits: Limits) -> BoundTensor:
    if not isinstance(item, dict) or set(item) != _ENTRY_KEYS:
        raise FormatError(f"a TFLite binding entry has exactly the keys {sorted(_ENTRY_KEYS)}")
    name = item["name"]
    if not isinstance(name, str) or not 1 <= len(name) <= limits.max_name_length or not name.isprintable():
        raise FormatError(f"a TFLite binding entry needs a printable name of 1 to {limits.max_name_length} characters")
    if type(item["tensor"]) is not int or type(item["buffer"]) is not int or item["tensor"] < 0 or item["buffer"] < 0:
        raise FormatError(f"{name}: tensor and buffer must be non-negative integers")
    shape = read_shape(item["shape"], limits, name)
    permutation = item["permutation"]
    if not isinstance(permutation, list) or not all(type(axis) is int for axis in permutation) \
            or sorted(permutation) != list(range(len(shape))):
        raise FormatError(f"{name}: permutation {permutation!r} is not an order of the {len(shape)} axes")
    return BoundTensor(name, item["tensor"], item["buffer"], shape, tuple(permutation))
