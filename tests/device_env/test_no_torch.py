"""Collected only in the device environment (RANKCAST_DEVICE_ENV=1, see tests/conftest.py)."""

import importlib.util


def test_device_environment_has_no_torch_or_plotting() -> None:
    for heavy in ("torch", "matplotlib", "sklearn"):
        assert importlib.util.find_spec(heavy) is None, f"{heavy} must not be in a device install"
