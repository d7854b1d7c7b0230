"""The commands a device uses must work where torch is not installed (a Raspberry Pi image)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from codec import encode_payload, encode_weights, lowrank_record, read_slots

# Runs the CLI with `import torch` made impossible, and fails if anything imported torch anyway.
_RUNNER = """
import sys
sys.modules["torch"] = None
from rankcast.cli import main
code = main(sys.argv[1:])
heavy = ("torch", "matplotlib", "sklearn")
loaded = [name for name, module in sys.modules.items() if module is not None and name.split(".")[0] in heavy]
assert not loaded, f"device commands imported {loaded}"
sys.exit(code)
"""


def _rankcast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_help_lists_commands_without_torch() -> None:
    result = _rankcast("--help")
    assert result.returncode == 0, result.stderr
    assert "keygen" in result.stdout and "inspect" in result.stdout


def test_keygen_and_inspect_run_without_torch(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = _rankcast("keygen", str(keys))
    assert made.returncode == 0, made.stderr
    assert (keys / "signing.key").stat().st_mode & 0o777 == 0o600
    payload, _ = encode_payload([lowrank_record("fc.weight", (4, 3), np.ones((4, 1)), np.ones((1, 3)))])
    (tmp_path / "update.bin").write_bytes(payload)
    shown = _rankcast("inspect", str(tmp_path / "update.bin"))
    assert shown.returncode == 0, shown.stderr
    assert "fc.weight" in shown.stdout and "rank 1" in shown.stdout


def test_inspect_lists_a_format_2_payload_with_the_model_it_applies_to(tmp_path: Path) -> None:
    model = encode_weights({"fc.weight": np.zeros((4, 3)), "fc.bias": np.zeros(4)})
    (tmp_path / "model.rcw").write_bytes(model)
    record = lowrank_record("fc.weight", (4, 3), np.ones((4, 1)), np.ones((1, 3)))
    payload, _ = encode_payload([record], layout=read_slots(model))
    (tmp_path / "update.bin").write_bytes(payload)
    alone = _rankcast("inspect", str(tmp_path / "update.bin"))
    assert alone.returncode == 0, alone.stderr
    assert "format 2" in alone.stdout and "--model FILE" in alone.stdout and "fc.weight" not in alone.stdout
    shown = _rankcast("inspect", str(tmp_path / "update.bin"), "--model", str(tmp_path / "model.rcw"))
    assert shown.returncode == 0, shown.stderr
    assert "fc.weight" in shown.stdout and "rank 1" in shown.stdout and "4x3" in shown.stdout
    other = encode_weights({"fc.bias": np.zeros(4)})
    (tmp_path / "other.rcw").write_bytes(other)
    wrong = _rankcast("inspect", str(tmp_path / "update.bin"), "--model", str(tmp_path / "other.rcw"))
    assert wrong.returncode != 0 and "model-mismatch" in wrong.stderr and "Traceback" not in wrong.stderr
