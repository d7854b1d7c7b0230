"""An update applied in place to an exported .tflite gives the model the server reconstructs, exactly."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from codec.apply import apply_payload
from codec.payload import encode_payload
from codec.quantise import dense_record, lowrank_record
from codec.tflite_model import parse_tflite
from codec.weights import encode_weights, load_weights
from device_client.tflite_runtime import run
from publisher.tflite.export import export_tflite

INPUT_SHAPE = (1, 3, 16, 16)
_DEVICE_PYTHON = Path(__file__).resolve().parents[2] / ".venv-device" / "bin" / "python"
_APPLY = """
import sys
from pathlib import Path
from codec.apply import apply_payload
from codec.tflite import tflite_slots
path, payload, length = sys.argv[1:]
print(apply_payload(Path(path), Path(payload).read_bytes(), int(length), slot_reader=tflite_slots).hex())
"""


def _payload(model: nn.Module) -> tuple[bytes, int]:
    rng = np.random.default_rng(11)
    shapes = {name: tuple(value.shape) for name, value in model.state_dict().items()}

    def lowrank(name: str, rank: int, dtype: str):
        out, rest = shapes[name][0], math.prod(shapes[name][1:])
        u, v = rng.standard_normal((out, rank)) * 0.05, rng.standard_normal((rank, rest)) * 0.05
        return lowrank_record(name, shapes[name], u, v, dtype=dtype)

    return encode_payload([
        lowrank("0.weight", 2, "i8"), lowrank("2.weight", 2, "i4"), lowrank("5.weight", 4, "i4"),
        lowrank("9.weight", 3, "i8"),
        dense_record("5.bias", rng.standard_normal(16) * 0.01, mode="add", dtype="i8"),
        dense_record("9.bias", rng.standard_normal(10), mode="set"),
    ])


def _apply_in_process(python: str, model: Path, payload: Path, length: int, threads: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    result = subprocess.run([python, "-c", _APPLY, str(model), str(payload), str(length)], env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip()


@pytest.fixture(scope="module")
def patched(fresh_model, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The exported CNN patched in separate processes, and the same update applied to RCW weights."""
    cnn, tmp_path = fresh_model("cnn"), tmp_path_factory.mktemp("patch")
    original = tmp_path / "base.tflite"
    binding = export_tflite(cnn, INPUT_SHAPE, original)
    payload, length = _payload(cnn)
    (tmp_path / "payload.bin").write_bytes(payload)
    pythons = [sys.executable] + ([str(_DEVICE_PYTHON)] if _DEVICE_PYTHON.exists() else [])
    digests, files = set(), []
    for n, (python, threads) in enumerate((p, t) for p in pythons for t in ("1", "2")):
        target = tmp_path / f"patched-{n}.tflite"
        target.write_bytes(original.read_bytes())
        digests.add(_apply_in_process(python, target, tmp_path / "payload.bin", length, threads))
        files.append(target)
    rcw = tmp_path / "weights.rcw"
    rcw.write_bytes(encode_weights({name: value.numpy() for name, value in cnn.state_dict().items()}))
    apply_payload(rcw, payload, length)
    return {"original": original, "tflite": files[0], "digests": digests, "rcw": load_weights(rcw),
            "binding": binding, "runs": len(files)}


def test_the_patched_file_is_identical_across_processes_and_thread_counts(patched: dict) -> None:
    assert patched["runs"] >= 2
    assert len(patched["digests"]) == 1


def test_tflite_outputs_equal_pytorch_with_the_reconstructed_weights(patched: dict, cnn: nn.Module) -> None:
    cnn.load_state_dict({name: torch.from_numpy(value) for name, value in patched["rcw"].items()})
    x = torch.randn(6, *INPUT_SHAPE[1:], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = cnn(x).numpy()
    assert np.abs(run(patched["tflite"], x.numpy()) - expected).max() <= 1e-4


def test_weight_buffers_hold_the_reconstructed_weights_bit_for_bit(patched: dict) -> None:
    data = patched["tflite"].read_bytes()
    model = parse_tflite(data)
    for entry in patched["binding"].tensors:
        span = model.data_of(entry.tensor)
        stored = np.ascontiguousarray(np.transpose(patched["rcw"][entry.name], entry.permutation), "<f4")
        assert data[span.offset : span.end] == stored.tobytes(), entry.name


def test_only_weight_buffer_bytes_changed(patched: dict) -> None:
    before = np.frombuffer(patched["original"].read_bytes(), np.uint8)
    after = np.frombuffer(patched["tflite"].read_bytes(), np.uint8)
    model = parse_tflite(before.tobytes())
    changed = np.flatnonzero(before != after)
    spans = [model.data_of(entry.tensor) for entry in patched["binding"].tensors]
    assert changed.size > 0
    assert all(any(span.offset <= i < span.end for span in spans) for i in changed)
