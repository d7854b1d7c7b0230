"""Exact apply: the updated model file is W + (su ⊙ (Qu·Qv)) ⊙ sv computed in a fixed float32 order.

The references here are computed independently from the decoded codes and scales: the integer product
in int64, then the prescribed float32 elementwise steps; a float64 reference bounds the rounding.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from codec import (
    FormatError,
    ModelMismatchError,
    NonFiniteError,
    Record,
    SigningKey,
    apply_payload,
    dense_record,
    encode_payload,
    file_sha256,
    full_record,
    load_weights,
    lowrank_record,
    make_release,
    sparse_record,
    write_weights,
)
from codec.apply import exact_product
from codec.arrays import WireArray, pack, unpack
from codec.payload import compress, encode_document
from codec.records import DenseRecord, LowRankRecord, SparseRecord

F32_EPS = np.finfo(np.float32).eps


def apply(path: Path, records: list[Record]) -> bytes:
    payload, length = encode_payload(records, level=1)
    return apply_payload(path, payload, length)


def model(tmp_path: Path, tensors: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "model.rcw"
    write_weights(path, tensors)
    return path


def integer_product(record: LowRankRecord) -> np.ndarray:
    """Qu·Qv exactly, in int64."""
    return unpack(record.u).astype(np.int64) @ unpack(record.v).astype(np.int64)


def prescribed(weight: np.ndarray, record: LowRankRecord) -> np.ndarray:
    """The specified float32 result: P rounded once to float32, times su, times sv, plus W."""
    product = integer_product(record).astype(np.float64).astype(np.float32)
    delta = (product * unpack(record.u_scale)[:, None]) * unpack(record.v_scale)[None, :]
    return (weight.astype(np.float32).reshape(delta.shape) + delta).reshape(weight.shape)


def float64_reference(weight: np.ndarray, record: LowRankRecord) -> tuple[np.ndarray, np.ndarray]:
    """W + ΔW and ΔW in float64 (exact up to float64 rounding)."""
    delta = integer_product(record).astype(np.float64)
    delta = delta * unpack(record.u_scale).astype(np.float64)[:, None] * unpack(record.v_scale).astype(np.float64)
    return weight.astype(np.float64).reshape(delta.shape) + delta, delta


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def coded_lowrank(name: str, u_codes: np.ndarray, v_codes: np.ndarray, dtype: str) -> LowRankRecord:
    """A lowrank record with the given codes and unit scales."""
    out, rest = u_codes.shape[0], v_codes.shape[1]
    ones = pack(np.ones(out, np.float32), "f32"), pack(np.ones(rest, np.float32), "f32")
    return LowRankRecord(name, (out, rest), pack(u_codes, dtype), ones[0], pack(v_codes, dtype), ones[1])


# ------------------------------------------------------------------------------------------- low rank


@pytest.mark.parametrize(
    ("dtype", "shape", "rank"),
    [("b1", (18, 25), 7), ("trit", (20, 31), 6), ("i4", (24, 40), 3), ("i8", (16, 4, 3, 3), 8), ("i16", (33, 65), 5)],
)
def test_lowrank_apply_is_bit_identical_to_the_prescribed_float32_order(
    tmp_path: Path, dtype: str, shape: tuple[int, ...], rank: int
) -> None:
    rng = np.random.default_rng(7)
    weight = rng.normal(size=shape).astype(np.float32)
    bias = rng.normal(size=shape[0]).astype(np.float32)
    rest = math.prod(shape[1:])
    record = lowrank_record("w", shape, rng.normal(size=(shape[0], rank)), rng.normal(size=(rank, rest)) * 0.1, dtype)
    path = model(tmp_path, {"w": weight, "b": bias})
    digest = apply(path, [record])
    assert digest == file_sha256(path) == hashlib.sha256(path.read_bytes()).digest()
    result = load_weights(path)
    assert same_bits(result["w"], prescribed(weight, record))
    assert same_bits(result["b"], bias)  # tensors without a record are untouched
    reference, delta = float64_reference(weight, record)
    error = np.abs(result["w"].reshape(reference.shape).astype(np.float64) - reference)
    assert (error <= 4 * F32_EPS * (np.abs(weight.reshape(reference.shape)) + 2 * np.abs(delta)) + 1e-45).all()
    assert not same_bits(result["w"], weight)  # the update did change the weight


def test_a_one_element_scale_gives_the_same_bytes_as_that_scale_repeated(tmp_path: Path) -> None:
    rng = np.random.default_rng(23)
    weight = rng.normal(size=(12, 9)).astype(np.float32)
    u, v = pack(rng.integers(-1, 2, (12, 4)), "trit"), pack(rng.integers(-1, 2, (4, 9)), "trit")

    def scales(count: int, value: float) -> WireArray:
        return pack(np.full(count, value, np.float32), "f32")

    repeated = LowRankRecord("w", (12, 9), u, scales(12, 0.0371), v, scales(9, 1.73))
    single = LowRankRecord("w", (12, 9), u, scales(1, 0.0371), v, scales(1, 1.73))
    (tmp_path / "single").mkdir()
    path = model(tmp_path / "single", {"w": weight})
    assert apply(path, [single]) == apply(model(tmp_path, {"w": weight}), [repeated])
    assert same_bits(load_weights(path)["w"], prescribed(weight, repeated))


@pytest.mark.parametrize("signs", ["random", "all-positive"])
def test_i8_product_at_rank_1024_with_extreme_codes_is_exact(tmp_path: Path, signs: str) -> None:
    rng = np.random.default_rng(11)
    shape_u, shape_v = (16, 1024), (1024, 24)
    if signs == "random":
        u = (rng.integers(0, 2, shape_u) * 254 - 127).astype(np.int8)
        v = (rng.integers(0, 2, shape_v) * 254 - 127).astype(np.int8)
    else:
        u, v = np.full(shape_u, 127, np.int8), np.full(shape_v, 127, np.int8)
    reference = u.astype(np.int64) @ v.astype(np.int64)
    assert np.abs(reference).max() < 2**24
    assert np.array_equal(exact_product(u, v, 127, 127).astype(np.int64), reference)
    path = model(tmp_path, {"w": np.zeros((16, 24), np.float32)})
    apply(path, [coded_lowrank("w", u, v, "i8")])
    assert np.array_equal(load_weights(path)["w"].astype(np.int64), reference)


@pytest.mark.parametrize(("rank", "extreme"), [(64, False), (1024, True)])
def test_i16_codes_use_the_exact_product(tmp_path: Path, rank: int, extreme: bool) -> None:
    rng = np.random.default_rng(13)
    if extreme:
        u, v = np.full((8, rank), 32767, np.int16), np.full((rank, 12), -32767, np.int16)
    else:
        u = rng.integers(-32767, 32768, (8, rank)).astype(np.int16)
        v = rng.integers(-32767, 32768, (rank, 12)).astype(np.int16)
    exact = (u.astype(np.int64) @ v.astype(np.int64)).astype(np.float64).astype(np.float32)
    if not extreme:  # the data is hard enough that a plain float32 product would be wrong
        assert not np.array_equal(u.astype(np.float32) @ v.astype(np.float32), exact)
    assert same_bits(exact_product(u, v, 32767, 32767), exact)
    path = model(tmp_path, {"w": np.zeros((8, 12), np.float32)})
    apply(path, [coded_lowrank("w", u, v, "i16")])
    assert same_bits(load_weights(path)["w"], exact)


# ----------------------------------------------------------------------------------- dense and sparse


@pytest.mark.parametrize("mode", ["add", "set"])
@pytest.mark.parametrize(("dtype", "per_row"), [("f32", False), ("i8", False), ("i8", True), ("i4", True),
                                                ("i16", False), ("b1", True), ("trit", True)])
def test_dense_apply_adds_or_sets_the_dequantised_values(tmp_path: Path, mode: str, dtype: str, per_row: bool) -> None:
    rng = np.random.default_rng(17)
    weight = rng.normal(size=(5, 6)).astype(np.float32)
    record = dense_record("w", rng.normal(size=(5, 6)), mode=mode, dtype=dtype, per_row=per_row)
    path = model(tmp_path, {"w": weight})
    apply(path, [record])
    values = unpack(record.values).astype(np.float32)
    if record.scale is not None:
        values = values * unpack(record.scale).reshape(-1, 1)
    expected = weight + values if mode == "add" else values
    assert same_bits(load_weights(path)["w"], expected.astype(np.float32))


@pytest.mark.parametrize("mode", ["add", "set"])
@pytest.mark.parametrize("dtype", ["f32", "i8", "b1"])
def test_sparse_apply_touches_exactly_the_listed_positions(tmp_path: Path, mode: str, dtype: str) -> None:
    rng = np.random.default_rng(19)
    weight = rng.normal(size=(6, 7)).astype(np.float32)
    positions = np.array([0, 3, 4, 20, 41])
    record = sparse_record("w", (6, 7), positions, rng.normal(size=5), mode=mode, dtype=dtype)
    path = model(tmp_path, {"w": weight})
    apply(path, [record])
    values = unpack(record.values).astype(np.float32)
    if record.scale is not None:
        values = values * unpack(record.scale)
    expected = weight.reshape(-1).copy()
    expected[positions] = expected[positions] + values if mode == "add" else values
    assert same_bits(load_weights(path)["w"], expected.reshape(6, 7))


def test_a_full_record_replaces_the_whole_file(tmp_path: Path) -> None:
    path = model(tmp_path, {"w": np.ones(4)})
    replacement = b"\x00new model file\xff" * 10
    assert apply(path, [full_record(replacement)]) == hashlib.sha256(replacement).digest()
    assert path.read_bytes() == replacement


def test_a_full_payload_with_data_after_its_document_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = model(tmp_path, {"w": np.ones(4)})
    before = path.read_bytes()
    document = encode_document([full_record(b"new model")]) + b"\xc0"
    with pytest.raises(FormatError):
        apply_payload(path, compress(document, level=1), len(document))
    assert path.read_bytes() == before


# ----------------------------------------------------------------------------------------- refusals


def _mismatches() -> dict[str, Record]:
    ones = np.ones((6, 4))
    return {
        "unknown-name": dense_record("missing", np.ones((4, 6))),
        "lowrank-transposed": lowrank_record("w", (6, 4), np.ones((6, 1)), np.ones((1, 4))),
        "dense-transposed": dense_record("w", ones),
        "dense-flat": dense_record("w", np.ones(24)),
        "sparse-transposed": sparse_record("w", (6, 4), np.array([1]), np.ones(1)),
        "lowrank-3d": lowrank_record("w", (4, 2, 3), np.ones((4, 1)), np.ones((1, 6))),
    }


@pytest.mark.parametrize("case", list(_mismatches()))
def test_a_record_that_does_not_fit_the_model_is_refused_and_nothing_changes(tmp_path: Path, case: str) -> None:
    path = model(tmp_path, {"w": np.ones((4, 6)), "b": np.zeros(4)})
    before = path.read_bytes()
    with pytest.raises(ModelMismatchError) as caught:
        apply(path, [_mismatches()[case]])
    assert caught.value.code == "model-mismatch"
    assert path.read_bytes() == before


def _overflows() -> dict[str, Record]:
    huge = np.full((2, 3), 3e38)
    big_scale = pack(np.full(2, 3e38, np.float32), "f32"), pack(np.full(3, 3e38, np.float32), "f32")
    codes = pack(np.full((2, 1), 127, np.int8), "i8"), pack(np.full((1, 3), 127, np.int8), "i8")
    return {
        "dense-add": dense_record("w", huge),
        "dense-codes-set": DenseRecord("w", "set", pack(np.full((2, 3), 127, np.int8), "i8"),
                                       pack(np.array([3e38], np.float32), "f32")),
        "lowrank": LowRankRecord("w", (2, 3), codes[0], big_scale[0], codes[1], big_scale[1]),
        "sparse-add": SparseRecord("w", (2, 3), "add", pack(np.array([0, 4], np.uint32), "u32"),
                                   pack(np.array([3e38, -3e38], np.float32), "f32")),
    }


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("case", list(_overflows()))
def test_an_update_that_would_make_weights_non_finite_is_refused_before_writing(tmp_path: Path, case: str) -> None:
    weight = np.array([[3e38, 1.0, 2.0], [3.0, -3e38, 5.0]], np.float32)
    path = model(tmp_path, {"b": np.zeros(2), "w": weight})
    with pytest.raises(NonFiniteError) as caught:
        apply(path, [dense_record("b", np.ones(2)), _overflows()[case]])
    assert caught.value.code == "non-finite"
    after = load_weights(path)
    assert same_bits(after["w"], weight)  # the target tensor is untouched ...
    assert same_bits(after["b"], np.ones(2, np.float32))  # ... records before it were applied (caller uses a copy)


@pytest.mark.parametrize("content", [b"", b"not a model file", b"RCW1\xff\xff\xff\xff"])
def test_a_model_file_that_is_not_rcw_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.rcw"
    path.write_bytes(content)
    with pytest.raises(FormatError):
        apply(path, [dense_record("w", np.ones(2))])
    assert path.read_bytes() == content


def test_a_payload_without_records_is_refused(tmp_path: Path) -> None:
    path = model(tmp_path, {"w": np.ones(2)})
    with pytest.raises(FormatError):
        apply(path, [])


# ------------------------------------------------------------------------------------------ determinism

_APPLY_RELEASE = textwrap.dedent(
    """
    import shutil, sys
    from pathlib import Path
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from codec import Reassembler, VerifyKey, apply_payload, read_manifest
    from codec.keys import key_id

    folder = Path(sys.argv[1])
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(sys.argv[2]))
    manifest = read_manifest((folder / "manifest").read_bytes(), {key_id(public): VerifyKey(key_id(public), public)})
    reassembler = Reassembler(manifest)
    for index in reversed(range(manifest.chunk_count)):
        reassembler.add(index, (folder / f"chunk-{index}").read_bytes())
    target = folder / f"applied-{sys.argv[3]}.rcw"
    shutil.copyfile(folder / "base.rcw", target)
    digest = apply_payload(target, reassembler.payload(), manifest.decompressed_length)
    print(digest.hex(), digest == manifest.target_sha256)
    """
)


def test_a_release_applies_to_the_same_bytes_with_one_or_two_blas_threads(
    tmp_path: Path, signing_key: SigningKey, child_env: dict[str, str]
) -> None:
    rng = np.random.default_rng(23)
    weight = rng.normal(size=(1024, 2048)).astype(np.float32)
    record = lowrank_record("w", (1024, 2048), rng.normal(size=(1024, 64)), rng.normal(size=(64, 2048)) * 0.01)
    write_weights(tmp_path / "base.rcw", {"w": weight})
    payload, length = encode_payload([record], level=3)
    local = tmp_path / "local.rcw"
    local.write_bytes((tmp_path / "base.rcw").read_bytes())
    target = apply_payload(local, payload, length)
    assert same_bits(load_weights(local)["w"], prescribed(weight, record))
    release = make_release(
        model="big", version=2, payload=payload, decompressed_length=length, target_sha256=target, key=signing_key,
        base_version=1, base_sha256=file_sha256(tmp_path / "base.rcw"), chunk_size=16 * 1024, created=1_700_000_000,
    )
    (tmp_path / "manifest").write_bytes(release.envelope)
    for index, chunk in enumerate(release.chunks):
        (tmp_path / f"chunk-{index}").write_bytes(chunk)
    public = signing_key.verify_key.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ).hex()
    outputs = []
    for threads in ("1", "2"):
        env = {**child_env, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        result = subprocess.run(
            [sys.executable, "-c", _APPLY_RELEASE, str(tmp_path), public, threads],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.split())
    assert outputs == [[target.hex(), "True"], [target.hex(), "True"]]
