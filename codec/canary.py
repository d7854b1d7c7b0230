"""The optional canary of a manifest: known inputs, the outputs the updated model must give, a tolerance.

A device runs the canary on the updated file after its sha256 matched and before it swaps it in; any
output off by more than ``atol``, or not finite, refuses the release (device code ``canary-failed``).
On the wire: ``{"atol": float, "inputs": array, "outputs": array}`` with f32 arrays (docs/format.md §1
and §5); in the canonical encoding every map, the arrays' too, has its keys sorted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from codec.arrays import WireArray, pack, read_array, unpack
from codec.errors import FormatError, LimitError
from codec.limits import KIB, Limits

#: At most this many bytes of inputs and outputs together (the whole manifest is at most 128 KiB).
MAX_CANARY_BYTES = 64 * KIB
_KEYS = {"atol", "inputs", "outputs"}


@dataclass(frozen=True)
class Canary:
    """``inputs`` and ``outputs`` are f32 arrays whose first axis is the same batch of examples."""

    inputs: WireArray
    outputs: WireArray
    atol: float

    @classmethod
    def from_arrays(cls, inputs: np.ndarray, outputs: np.ndarray, atol: float) -> Canary:
        """A validated canary from numpy arrays (converted to float32)."""
        canary = cls(pack(np.asarray(inputs, np.float32), "f32"), pack(np.asarray(outputs, np.float32), "f32"),
                     float(atol))
        return read_canary(canary.to_msgpack(), Limits())

    def input_array(self) -> np.ndarray:
        return unpack(self.inputs)

    def output_array(self) -> np.ndarray:
        return unpack(self.outputs)

    def to_msgpack(self) -> dict:
        """The canonical map: keys sorted, the arrays' keys too."""
        return {"atol": self.atol, "inputs": _sorted(self.inputs), "outputs": _sorted(self.outputs)}


def read_canary(value: object, limits: Limits) -> Canary:
    """Validate a canary map from a manifest; raises FormatError, LimitError or NonFiniteError."""
    if not isinstance(value, dict) or set(value) != _KEYS:
        raise FormatError("canary must be a map with exactly atol, inputs and outputs")
    atol = value["atol"]
    if type(atol) is not float or not math.isfinite(atol) or atol <= 0:
        raise FormatError(f"canary atol must be a finite float above 0, got {atol!r}")
    inputs = read_array(value["inputs"], limits, "canary inputs", ("f32",))
    outputs = read_array(value["outputs"], limits, "canary outputs", ("f32",))
    if inputs.shape[0] != outputs.shape[0]:
        raise FormatError(
            f"canary inputs {list(inputs.shape)} and outputs {list(outputs.shape)} must have the same first axis "
            "(the batch of examples)"
        )
    if len(inputs.data) + len(outputs.data) > MAX_CANARY_BYTES:
        raise LimitError(f"canary arrays of {len(inputs.data) + len(outputs.data)} bytes exceed {MAX_CANARY_BYTES}")
    return Canary(inputs, outputs, atol)


def _sorted(array: WireArray) -> dict:
    return dict(sorted(array.to_msgpack().items()))
