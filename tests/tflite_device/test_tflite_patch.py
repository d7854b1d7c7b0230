"""Updates patch a .tflite file's weight buffers in place, bit-identical to the same update on RCW."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.apply import apply_payload, file_sha256
from codec.errors import ModelMismatchError, NonFiniteError, UpdateError
from codec.payload import encode_payload
from codec.quantise import dense_record, lowrank_record, sparse_record
from codec.tflite import tflite_slots
from codec.tflite_model import parse_tflite
from codec.weights import encode_weights, load_weights

_APPLY = """
import sys
from pathlib import Path
from codec.apply import apply_payload
from codec.tflite import tflite_slots
path, payload, length = sys.argv[1:]
print(apply_payload(Path(path), Path(payload).read_bytes(), int(length), slot_reader=tflite_slots).hex())
"""


def _factors(rng: np.random.Generator, shape: tuple[int, ...], rank: int) -> tuple[np.ndarray, np.ndarray]:
    rest = math.prod(shape[1:])
    return rng.standard_normal((shape[0], rank)) * 0.1, rng.standard_normal((rank, rest)) * 0.1


def _cnn_payload() -> tuple[bytes, int]:
    rng = np.random.default_rng(7)
    records = [
        lowrank_record("conv.weight", (4, 3, 3, 3), *_factors(rng, (4, 3, 3, 3), 2), dtype="i8"),
        lowrank_record("dw.weight", (8, 1, 3, 3), *_factors(rng, (8, 1, 3, 3), 2), dtype="i4"),
        lowrank_record("fc.weight", (5, 128), *_factors(rng, (5, 128), 3), dtype="i4"),
        dense_record("conv.bias", rng.standard_normal(4) * 0.01, mode="add", dtype="i8"),
        dense_record("fc.bias", rng.standard_normal(5), mode="set"),
        sparse_record("dw.bias", (8,), np.array([1, 5]), np.array([0.5, -0.25]), mode="add"),
    ]
    return encode_payload(records)


def _patched_spans(data: bytes, binding) -> list[tuple[int, int]]:
    model = parse_tflite(data)
    return [(model.data_of(entry.tensor).offset, model.data_of(entry.tensor).end) for entry in binding.tensors]


def test_patched_buffers_equal_the_rcw_result_in_tflite_layout(cnn, tmp_path: Path) -> None:
    payload, length = _cnn_payload()
    tflite = cnn.write(tmp_path / "model.tflite")
    rcw = tmp_path / "model.rcw"
    rcw.write_bytes(encode_weights(cnn.weights))
    apply_payload(tflite, payload, length, slot_reader=tflite_slots)
    apply_payload(rcw, payload, length)
    expected, patched = load_weights(rcw), tflite.read_bytes()
    model = parse_tflite(patched)
    for entry in cnn.binding.tensors:
        span = model.data_of(entry.tensor)
        stored = np.ascontiguousarray(np.transpose(expected[entry.name], entry.permutation), "<f4")
        assert patched[span.offset : span.end] == stored.tobytes(), entry.name
        assert not np.array_equal(expected[entry.name], cnn.weights[entry.name]), entry.name


def test_only_weight_buffer_bytes_change(cnn, tmp_path: Path) -> None:
    payload, length = _cnn_payload()
    tflite = cnn.write(tmp_path / "model.tflite")
    apply_payload(tflite, payload, length, slot_reader=tflite_slots)
    before, after = np.frombuffer(cnn.data, np.uint8), np.frombuffer(tflite.read_bytes(), np.uint8)
    assert before.size == after.size
    outside = np.ones(before.size, bool)
    for start, end in _patched_spans(cnn.data, cnn.binding):
        outside[start:end] = False
    assert np.array_equal(before[outside], after[outside])
    assert not np.array_equal(before, after)


def test_the_sha256_is_the_same_in_processes_with_one_and_two_threads(cnn, tmp_path: Path) -> None:
    payload, length = _cnn_payload()
    (tmp_path / "payload.bin").write_bytes(payload)
    digests = set()
    for threads in ("1", "2"):
        model = cnn.write(tmp_path / f"model-{threads}.tflite")
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        result = subprocess.run([sys.executable, "-c", _APPLY, str(model), str(tmp_path / "payload.bin"), str(length)],
                                env=env, capture_output=True, text=True, timeout=120, check=True)
        digests.add(result.stdout.strip())
        assert bytes.fromhex(result.stdout.strip()) == file_sha256(model)
    assert len(digests) == 1


def test_an_update_of_the_wrong_shape_is_refused(mlp, tmp_path: Path) -> None:
    payload, length = encode_payload([lowrank_record("fc1.weight", (16, 32), np.ones((16, 1)), np.ones((1, 32)))])
    with pytest.raises(ModelMismatchError, match="fc1.weight"):
        apply_payload(mlp.write(tmp_path / "model.tflite"), payload, length, slot_reader=tflite_slots)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_a_non_finite_result_leaves_the_tensor_unchanged(mlp, tmp_path: Path) -> None:
    path = mlp.write(tmp_path / "model.tflite")
    payload, length = encode_payload([dense_record("fc2.bias", np.full(4, 3e38), mode="add")])
    apply_payload(path, payload, length, slot_reader=tflite_slots)  # 3e38: still finite
    before = path.read_bytes()
    with pytest.raises(NonFiniteError):
        apply_payload(path, payload, length, slot_reader=tflite_slots)  # 6e38: overflows float32
    assert path.read_bytes() == before


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_corrupted_memory_mapped_files_raise_only_codec_errors(mlp, tmp_path_factory, data) -> None:
    raw = bytearray(mlp.data)
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("fuzz") / "model.tflite"
    path.write_bytes(raw)
    payload, length = encode_payload([dense_record("fc2.bias", np.ones(4), mode="add")])
    try:  # the map must close cleanly however the parse fails (no view of it kept alive)
        apply_payload(path, payload, length, slot_reader=tflite_slots)
    except UpdateError:
        pass
