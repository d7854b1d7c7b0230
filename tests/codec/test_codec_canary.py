"""A canary's tolerance: absolute near zero, relative to the output's magnitude for large outputs."""

from __future__ import annotations

import math

import numpy as np

from codec.canary import Canary

X = np.zeros((2, 3), np.float32)
EXPECTED = np.array([[0.0, 1.0], [-40.0, 400.0]], np.float32)


def test_outputs_within_atol_plus_rtol_times_the_expected_magnitude_hold() -> None:
    canary = Canary.from_arrays(X, EXPECTED, atol=1e-5, rtol=1e-4)
    allowed = 1e-5 + 1e-4 * np.abs(EXPECTED.astype(np.float64))
    assert canary.holds(EXPECTED) and canary.holds((EXPECTED + 0.9 * allowed).astype(np.float32))
    assert canary.holds((EXPECTED - 0.9 * allowed).astype(np.float32))
    for index in np.ndindex(EXPECTED.shape):
        off = EXPECTED.astype(np.float64).copy()
        off[index] += 1.1 * allowed[index]
        assert not canary.holds(off.astype(np.float32)), index


def test_without_rtol_the_tolerance_is_absolute_as_before() -> None:
    canary = Canary.from_arrays(X, EXPECTED, atol=1e-5)
    assert canary.rtol == 0.0 and not canary.holds(EXPECTED * np.float32(1.0001))
    assert canary.misses(EXPECTED) == -1e-5


def test_outputs_of_another_shape_or_not_finite_miss_by_infinity() -> None:
    canary = Canary.from_arrays(X, EXPECTED, atol=1e-5, rtol=1e-4)
    assert canary.misses(EXPECTED[:1]) == math.inf and not canary.holds(EXPECTED[:1])
    assert canary.misses(np.full_like(EXPECTED, np.nan)) == math.inf
