"""Apply gives the same bytes whatever the process's floating-point environment: a library built with
-ffast-math (flush-to-zero and denormals-are-zero for the whole process, as tflite-runtime's aarch64 wheel
does with flush-to-zero) is loaded into a child process, which applies an update over subnormal weights."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codec import fpenv
from codec.fpenv import ieee_arithmetic, is_ieee_default

_CHILD = textwrap.dedent("""
    import ctypes, hashlib, json, sys, tempfile
    from pathlib import Path
    import numpy as np
    from codec import encode_payload, encode_weights, lowrank_record
    from codec.apply import apply_payload, apply_to_bytes, lowrank_delta
    from codec import fpenv
    fast_math, no_libm = sys.argv[1], sys.argv[2] == "1"
    rng = np.random.default_rng(5)
    bits = rng.integers(1, 1 << 23, size=(64, 48), dtype=np.uint32)  # every weight subnormal
    weights = bits.view(np.float32)
    model = encode_weights({"w": weights})
    record = lowrank_record("w", (64, 48), rng.standard_normal((64, 8)) * 1e-39, rng.integers(-1, 2, (8, 48)))
    payload, length = encode_payload([record])  # what the publisher sent, made in a clean environment
    if fast_math:
        ctypes.CDLL(fast_math)  # its start-up code sets flush-to-zero and denormals-are-zero
    if no_libm:
        fpenv._libm = lambda: None
    before = fpenv.is_ieee_default()
    try:
        data, digest = apply_to_bytes(model, payload, length)
        with tempfile.TemporaryDirectory() as folder:  # the device's way: a staged file patched in place
            staged = Path(folder) / "model.rcw"
            staged.write_bytes(model)
            file_digest = apply_payload(staged, payload, length)
    except Exception as exc:
        print(json.dumps({"error": getattr(exc, "code", repr(exc))}))
        sys.exit(0)
    naive = (weights + lowrank_delta(record)).tobytes()  # the same steps, in this process's environment
    print(json.dumps({"sha256": digest.hex(), "file_sha256": file_digest.hex(), "ieee_before": before,
                      "ieee_after": fpenv.is_ieee_default(),
                      "naive_sha256": hashlib.sha256(naive).hexdigest(),
                      "applied_weights_sha256": hashlib.sha256(
                          np.frombuffer(data, "<f4", weights.size, len(data) - weights.nbytes).tobytes()).hexdigest()}))
""")


@pytest.fixture(scope="module")
def fast_math_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared library built with -ffast-math (gcc links its flush-to-zero start-up code in)."""
    assert shutil.which("gcc"), "gcc builds the -ffast-math library this test loads (make test installs it)"
    folder = tmp_path_factory.mktemp("fast-math")
    (folder / "marker.c").write_text("int rankcast_fast_math_marker(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-ffast-math", str(folder / "marker.c"), "-o",
                    str(folder / "libfastmath.so")], check=True, capture_output=True, timeout=60)
    return folder / "libfastmath.so"


def _apply_in_child(library: Path | None, no_libm: bool = False) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(library or ""), "1" if no_libm else "0"],
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def test_flush_to_zero_in_the_process_changes_nothing_that_apply_writes(fast_math_library: Path) -> None:
    clean, flushing = _apply_in_child(None), _apply_in_child(fast_math_library)
    assert clean["ieee_before"] and not flushing["ieee_before"], "the library did not turn flushing on"
    assert flushing["sha256"] == flushing["file_sha256"] == clean["sha256"] == clean["file_sha256"]
    assert flushing["naive_sha256"] != clean["naive_sha256"], "the same arithmetic unguarded gives other bytes"
    assert clean["naive_sha256"] == clean["applied_weights_sha256"], "unflushed, the guard changes nothing"
    assert not flushing["ieee_after"], "the process gets its own environment back"


def test_an_environment_that_cannot_be_reset_is_refused_before_anything_is_written(fast_math_library) -> None:
    assert _apply_in_child(fast_math_library, no_libm=True) == {"error": "fp-environment"}
    assert "sha256" in _apply_in_child(None, no_libm=True), "a default environment needs no reset"


def test_the_default_environment_is_ieee_and_the_guard_keeps_it() -> None:
    assert is_ieee_default()
    with ieee_arithmetic():
        assert is_ieee_default()
    assert is_ieee_default()


def test_the_default_environment_pointer_follows_the_c_library(monkeypatch: pytest.MonkeyPatch) -> None:
    libm = fpenv._libm()
    assert libm is not None, "this Linux machine has a libm with fesetenv"
    assert fpenv._default_env(libm).value == ctypes.c_void_p(-1).value, "glibc and musl: ((const fenv_t *) -1)"
    monkeypatch.setattr(sys, "platform", "win32")
    assert fpenv._default_env(libm) is None, "without a known FE_DFL_ENV nothing is reset"
    libc = ctypes.CDLL(None)
    exported = ctypes.c_char.in_dll(libc, "environ")  # any exported data symbol stands in for __fe_dfl_env
    monkeypatch.setattr(fpenv, "_DEFAULT_ENV_SYMBOLS", ("__fe_dfl_env", "environ"))
    assert fpenv._default_env(libc).value == ctypes.addressof(exported), "bionic, FreeBSD, macOS: the symbol"
