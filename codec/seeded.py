"""Seeded sign factors: a lowrank factor of ±1 codes regenerated from a 64-bit seed instead of sent.

The codes are the bits of SHAKE128(``DOMAIN`` + seed as 8 little-endian bytes), read as a ``b1``
array: element k is bit (k mod 8) of output byte k div 8, 1 meaning +1 and 0 meaning -1, in C order
over the factor's shape. The wire form is ``{"dtype": "b1", "shape", "seed", "gen": "shake128-signs"}``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from codec.arrays import WireArray, byte_length, read_array, read_shape, unpack
from codec.errors import FormatError
from codec.limits import Limits

GENERATOR = "shake128-signs"
DOMAIN = b"rankcast-signs-v1"
MAX_SEED = 2**64 - 1
_KEYS = {"dtype", "shape", "seed", "gen"}


@dataclass(frozen=True)
class SeededSigns:
    """A factor of ±1 codes generated from ``seed``; ``dtype`` is ``b1`` (largest code magnitude 1)."""

    dtype: ClassVar[str] = "b1"
    shape: tuple[int, ...]
    seed: int

    def __post_init__(self) -> None:
        if type(self.seed) is not int or not 0 <= self.seed <= MAX_SEED:
            raise FormatError(f"a sign seed must be an unsigned 64-bit integer, got {self.seed!r:.40}")

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_msgpack(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape), "seed": self.seed, "gen": GENERATOR}

    def expand(self) -> WireArray:
        """The generated codes as a ``b1`` array (unused bits of its last byte cleared)."""
        stream = hashlib.shake_128(DOMAIN + self.seed.to_bytes(8, "little"))
        data = bytearray(stream.digest(byte_length("b1", self.size)))
        if self.size % 8:
            data[-1] &= (1 << (self.size % 8)) - 1
        return WireArray("b1", self.shape, bytes(data))


Factor = WireArray | SeededSigns


def factor_codes(factor: Factor) -> np.ndarray:
    """A lowrank factor's integer codes, stored or generated (int8 ±1 for seeded signs)."""
    return unpack(factor.expand() if isinstance(factor, SeededSigns) else factor)


def read_factor(value: object, limits: Limits, what: str, allowed: tuple[str, ...]) -> Factor:
    """A lowrank factor from the wire: a stored array of an ``allowed`` dtype, or seeded signs.

    A seeded factor's element count is checked against ``limits`` here; nothing is generated.
    """
    if not isinstance(value, dict) or "data" in value or not {"seed", "gen"} & set(value):
        return read_array(value, limits, what, allowed)
    if set(value) != _KEYS:
        raise FormatError(f"{what}: a seeded factor is a map with exactly dtype, shape, seed and gen")
    if value["gen"] != GENERATOR:
        raise FormatError(f"{what}: generator {value['gen']!r:.40} is unknown; this reader knows {GENERATOR!r}")
    if value["dtype"] != "b1":
        raise FormatError(f"{what}: a seeded factor's dtype must be 'b1', got {value['dtype']!r:.40}")
    shape = read_shape(value["shape"], limits, what)
    try:
        return SeededSigns(shape, value["seed"])
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
