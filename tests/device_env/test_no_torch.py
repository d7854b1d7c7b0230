"""Collected only in the device environment (RANKCAST_DEVICE_ENV=1, see tests/conftest.py)."""

import importlib.util


def test_device_environment_has_no_torch_or_plotting() -> None:
    for heavy in ("torch", "matplotlib", "sklearn"):
        assert importlib.util.find_spec(heavy) is None, f"{heavy} must not be in a device install"


def test_device_environment_runs_tflite_runtime_on_numpy_1() -> None:
    import numpy

    from device_client.tflite_runtime import interpreter_class

    assert numpy.__version__.startswith("1."), "tflite-runtime 2.14 needs NumPy 1.x"
    assert interpreter_class().__module__.startswith("tflite_runtime")
