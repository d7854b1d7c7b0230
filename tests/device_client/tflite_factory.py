"""Small .tflite models and updates for them, torch-free (publisher.tflite_ops and the codec only), so the
device tests that use them also run in the device environment (tflite-runtime, NumPy 1.x).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from codec.apply import apply_payload
from codec.model_files import read_model_slots
from codec.payload import encode_payload
from codec.quantise import dense_record, lowrank_record
from codec.records import Record
from codec.update_file import UpdateFile
from publisher.tflite_ops import Lowering

INPUTS = 16


def make_tflite(seed: int) -> bytes:
    """16 -> 32 -> ReLU -> 4 with random weights; input 1×16 (any batch at run time)."""
    rng = np.random.default_rng(seed)
    weights = {name: (rng.standard_normal(shape) * 0.3).astype(np.float32) for name, shape in
               {"fc1.weight": (32, INPUTS), "fc1.bias": (32,), "fc2.weight": (4, 32), "fc2.bias": (4,)}.items()}
    lowering = Lowering()
    x = lowering.input("x", (1, INPUTS))
    x = lowering.relu("relu", lowering.linear("fc1", x, weights["fc1.weight"], weights["fc1.bias"]))
    lowering.output(lowering.linear("fc2", x, weights["fc2.weight"], weights["fc2.bias"]))
    return lowering.finish()[0]


def weights_of(model_file: bytes) -> dict[str, np.ndarray]:
    """The logical (PyTorch-layout) weights inside a .tflite or RCW file."""
    return {name: slot.view(model_file).copy() for name, slot in read_model_slots(memoryview(model_file)).items()}


def reference_outputs(model_file: bytes, x: np.ndarray) -> np.ndarray:
    """The MLP of make_tflite computed with numpy from the file's weights."""
    w = weights_of(model_file)
    hidden = np.maximum(x @ w["fc1.weight"].T + w["fc1.bias"], 0)
    return hidden @ w["fc2.weight"].T + w["fc2.bias"]


def update_for(base: bytes, seed: int, rank: int = 2) -> UpdateFile:
    """Low-rank factors for the matrices and dense int8 deltas for the biases of ``base``."""
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    for name, value in weights_of(base).items():
        if value.ndim == 2:
            u = rng.standard_normal((value.shape[0], rank)).astype(np.float32) * 0.1
            v = rng.standard_normal((rank, value.shape[1])).astype(np.float32) * 0.1
            records.append(lowrank_record(name, value.shape, u, v))
        else:
            records.append(dense_record(name, rng.standard_normal(value.shape) * 0.01, dtype="i8"))
    return update_of(base, records)


def update_of(base: bytes, records: list[Record]) -> UpdateFile:
    """A delta update file of ``records`` for ``base``, with its target sha256."""
    payload, length = encode_payload(records)
    target = hashlib.sha256(applied(base, payload, length)).digest()
    return UpdateFile(payload, length, "delta", hashlib.sha256(base).digest(), target)


def applied(base: bytes, payload: bytes, length: int) -> bytes:
    """``base`` after the payload, applied by codec.apply (the slot reader follows the file's content)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model"
        path.write_bytes(base)
        apply_payload(path, payload, length)
        return path.read_bytes()


def install(model_dir: Path, model: str, model_file: bytes, version: int = 1) -> Path:
    """Install ``model_file`` as ``version`` the way `rankcast device install` does; returns its path."""
    from device_client.store import FileModelStore

    source = model_dir.parent / f"{model_dir.name}-source-{version}"
    source.write_bytes(model_file)
    return FileModelStore(model_dir).install(model, source, version).path
