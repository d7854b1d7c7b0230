"""IEEE 754 arithmetic for apply, whatever the process's floating-point environment was set to.

The format's arithmetic (docs/format.md, "Exact apply") is IEEE 754 binary32 with round to nearest even
and gradual underflow: subnormal inputs and results are kept. A process may have changed that for the
thread that applies: tflite-runtime 2.14's aarch64 wheel turns on flush-to-zero when it is imported,
and any library built with -ffast-math turns on flush-to-zero and denormals-are-zero on x86. The codec
therefore applies inside ``ieee_arithmetic()``: the calling thread's environment is saved, set to the
C library's default (fesetenv(FE_DFL_ENV): IEEE, nearest, no flushing) and restored afterwards, so the
runtime keeps whatever it set for inference. Threads other than the caller are not touched; apply's
elementwise steps run in the calling thread, and its only multithreaded step (the integer product, in
BLAS) handles integers, never subnormals.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np

from codec.errors import FloatEnvironmentError

#: glibc's and musl's FE_DFL_ENV: ((const fenv_t *) -1).
_LINUX_FE_DFL_ENV = -1
#: The exported default environments FE_DFL_ENV points to elsewhere: bionic and FreeBSD, then macOS.
_DEFAULT_ENV_SYMBOLS = ("__fe_dfl_env", "_FE_DFL_ENV")
#: Room for an fenv_t: 32 bytes on x86-64, 8 on aarch64, 28 or 32 elsewhere.
_FENV_BYTES = 128


def _f32(bits: int) -> np.ndarray:
    """A float32 array of one value, given by its bits (so no conversion can flush it on the way)."""
    return np.array([bits], np.uint32).view(np.float32)


def is_ieee_default() -> bool:
    """Whether the calling thread computes float32 as the format says: subnormals kept, nearest rounding."""
    smallest = _f32(0x00000001)  # 2^-149, the smallest subnormal
    kept_input = (smallest * _f32(0x3F800000))[0] != 0  # × 1.0: denormals-are-zero would give 0
    kept_result = (_f32(0x1F800000) * _f32(0x1F800000))[0] != 0  # 2^-64 × 2^-64 = 2^-128: flush-to-zero gives 0
    one, half_ulp = _f32(0x3F800000), _f32(0x33800000)  # 1 and 2^-24
    nearest = (one + half_ulp)[0] == 1 and (-one - half_ulp)[0] == -1
    return bool(kept_input and kept_result and nearest)


@contextmanager
def ieee_arithmetic() -> Iterator[None]:
    """Within the block the calling thread computes with IEEE defaults; its environment comes back after.

    Raises FloatEnvironmentError, before anything is computed, if the environment flushes subnormals or
    rounds otherwise and cannot be reset (no C library with fesetenv, or no known FE_DFL_ENV).
    """
    libm = _libm()
    default = None if libm is None else _default_env(libm)
    saved = ctypes.create_string_buffer(_FENV_BYTES)
    changed = default is not None and libm.fegetenv(saved) == 0 and libm.fesetenv(default) == 0
    try:
        if not is_ieee_default():
            raise FloatEnvironmentError(
                "this process computes floats with flush-to-zero or another rounding and it could not be reset; "
                "apply in a process that has not loaded a library built with -ffast-math"
            )
        yield
    finally:
        if changed:
            libm.fesetenv(saved)


@cache
def _libm() -> ctypes.CDLL | None:
    """The C library's floating-point environment functions (libm, or libc where libm is part of it)."""
    for name in (ctypes.util.find_library("m"), "libm.so.6", None):
        try:
            library = ctypes.CDLL(name)
            library.fegetenv.argtypes = library.fesetenv.argtypes = [ctypes.c_void_p]
            return library
        except (OSError, AttributeError, TypeError):  # TypeError: CDLL(None) on Windows
            continue
    return None


def _default_env(library: ctypes.CDLL) -> ctypes.c_void_p | None:
    """FE_DFL_ENV for this C library: an exported symbol's address, glibc's and musl's -1 on Linux, or
    None where neither is known (then nothing is reset and only the check in ieee_arithmetic runs)."""
    for symbol in _DEFAULT_ENV_SYMBOLS:
        try:
            return ctypes.c_void_p(ctypes.addressof(ctypes.c_char.in_dll(library, symbol)))
        except ValueError:
            continue
    return ctypes.c_void_p(_LINUX_FE_DFL_ENV) if sys.platform.startswith("linux") else None
