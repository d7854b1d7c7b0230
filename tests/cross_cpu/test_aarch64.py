"""Every golden release gives on aarch64 (Raspberry Pi 4/5 class, under qemu-user) the sha256 it gives here,
with NumPy 1.x + tflite-runtime 2.14 and with NumPy 2.x + ai-edge-litert, the runtime run first as a device
runs it at its first canary check. The aarch64 Pythons come from `make aarch64` (.ci/aarch64-env), which
`make test` runs first."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import pytest

from simulator.testbed.golden import FORMAT_2, write_cases

pytestmark = pytest.mark.slow

ENVIRONMENT = Path(__file__).resolve().parents[2] / ".aarch64"
RUNTIMES = {"tflite": ("tflite_runtime.interpreter", "1."), "litert": ("ai_edge_litert.interpreter", "2.")}


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("golden")
    return folder, write_cases(folder)


@pytest.mark.parametrize("name", RUNTIMES)
def test_every_golden_release_gives_the_same_sha256_on_aarch64(golden, name: str) -> None:
    folder, here = golden
    launcher = ENVIRONMENT / "bin" / f"python-{name}"
    assert launcher.is_file(), f"no aarch64 Python at {launcher}: `make aarch64` builds it (make test does)"
    done = subprocess.run([str(launcher), "-m", "simulator.testbed.golden", "apply", str(folder)],
                          capture_output=True, text=True, timeout=600, check=True)
    there = json.loads(done.stdout)
    module, numpy_major = RUNTIMES[name]
    assert (there["machine"], there["runtime"]) == ("aarch64", module) != (platform.machine(), None)
    assert there["numpy"].startswith(numpy_major)
    assert len(here) > 300 and there["sha256"] == here
    twins = [name for name in here if name.endswith(FORMAT_2)]
    assert len(twins) > 150 and all(here[twin] == here[twin.removesuffix(FORMAT_2)] for twin in twins)


def test_tflite_runtime_on_aarch64_really_leaves_flush_to_zero_on(golden) -> None:
    """Why the codec resets the environment: without it, releases over subnormal weights differ there."""
    folder, _ = golden
    done = subprocess.run([str(ENVIRONMENT / "bin" / "python-tflite"), "-m", "simulator.testbed.golden", "apply",
                           str(folder)], capture_output=True, text=True, timeout=600, check=True)
    assert json.loads(done.stdout)["ieee_after_runtime"] is False
