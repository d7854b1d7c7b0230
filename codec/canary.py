"""The optional canary of a manifest: known inputs, the outputs the updated model must give, a tolerance.

A device runs the canary on the updated file after its sha256 matched and before it swaps it in; any
output off by more than ``atol + rtol × |expected|``, or not finite, refuses the release (device code
``canary-failed``). The relative part lets one canary hold on every CPU and TFLite runtime a fleet runs:
their kernels sum in different orders (fused multiply-adds on ARM), so large outputs differ by more
than small ones (docs/tflite.md has the figures). On the wire: ``{"atol": float, "inputs": array,
"outputs": array}`` and, when ``rtol`` is above 0, ``"rtol": float`` (docs/format.md §1 and §5); in the
canonical encoding every map, the arrays' too, has its keys sorted, and ``rtol`` 0 is left out.
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
_OPTIONAL = {"rtol"}


@dataclass(frozen=True)
class Canary:
    """``inputs`` and ``outputs`` are f32 arrays whose first axis is the same batch of examples."""

    inputs: WireArray
    outputs: WireArray
    atol: float
    rtol: float = 0.0

    @classmethod
    def from_arrays(cls, inputs: np.ndarray, outputs: np.ndarray, atol: float, rtol: float = 0.0) -> Canary:
        """A validated canary from numpy arrays (converted to float32)."""
        canary = cls(pack(np.asarray(inputs, np.float32), "f32"), pack(np.asarray(outputs, np.float32), "f32"),
                     float(atol), float(rtol))
        return read_canary(canary.to_msgpack(), Limits())

    def input_array(self) -> np.ndarray:
        return unpack(self.inputs)

    def output_array(self) -> np.ndarray:
        return unpack(self.outputs)

    def misses(self, outputs: np.ndarray) -> float:
        """How far the worst output is outside the tolerance: max of |o - e| - (atol + rtol·|e|), in float64
        (above 0: the canary fails). Infinite for outputs of another shape or not finite."""
        expected = self.output_array().astype(np.float64)
        outputs = np.asarray(outputs)
        if outputs.shape != expected.shape or not np.isfinite(outputs).all():
            return math.inf
        return float(np.max(np.abs(outputs.astype(np.float64) - expected) - (self.atol + self.rtol * np.abs(expected))))

    def holds(self, outputs: np.ndarray) -> bool:
        """True if every output is finite and within atol + rtol × |expected| of the expected one."""
        return self.misses(outputs) <= 0

    def to_msgpack(self) -> dict:
        """The canonical map: keys sorted, the arrays' keys too; rtol only when above 0."""
        relative = {"rtol": self.rtol} if self.rtol else {}
        return {"atol": self.atol, "inputs": _sorted(self.inputs), "outputs": _sorted(self.outputs), **relative}


def read_canary(value: object, limits: Limits) -> Canary:
    """Validate a canary map from a manifest; raises FormatError, LimitError or NonFiniteError."""
    if not isinstance(value, dict) or not _KEYS <= set(value) <= _KEYS | _OPTIONAL:
        raise FormatError("canary must be a map of atol, inputs and outputs, and optionally rtol")
    atol, rtol = value["atol"], value.get("rtol", 0.0)
    if type(atol) is not float or not math.isfinite(atol) or atol <= 0:
        raise FormatError(f"canary atol must be a finite float above 0, got {atol!r}")
    if type(rtol) is not float or not math.isfinite(rtol) or rtol < 0 or ("rtol" in value and rtol == 0):
        raise FormatError(f"canary rtol must be a finite float above 0 (left out for none), got {rtol!r}")
    inputs = read_array(value["inputs"], limits, "canary inputs", ("f32",))
    outputs = read_array(value["outputs"], limits, "canary outputs", ("f32",))
    if inputs.shape[0] != outputs.shape[0]:
        raise FormatError(
            f"canary inputs {list(inputs.shape)} and outputs {list(outputs.shape)} must have the same first axis "
            "(the batch of examples)"
        )
    if len(inputs.data) + len(outputs.data) > MAX_CANARY_BYTES:
        raise LimitError(f"canary arrays of {len(inputs.data) + len(outputs.data)} bytes exceed {MAX_CANARY_BYTES}")
    return Canary(inputs, outputs, atol, rtol)


def _sorted(array: WireArray) -> dict:
    return dict(sorted(array.to_msgpack().items()))
