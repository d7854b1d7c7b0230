"""Model files, updates and releases made of random numbers: realistic shapes, no training, no torch.

- ``random_model_file``: an RCW file of random float32 tensors (random weights do not compress).
- ``random_records``: update records for tensors of given shapes (low-rank factors for matrices).
- ``random_update``: a delta update file for a model file's own tensors (``update_of``: for given records),
  its target sha256 computed.
- ``make_delta_release`` / ``make_full_release``: those, signed as a release.
- ``write_small_update``: a small MLP's RCW file and a rank-r update of it, written as .rcw/.rcu files
  (the default inputs of `rankcast simulate` and of the fleet scale benchmark).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from codec.apply import apply_to_bytes
from codec.keys import SigningKey, generate_signing_key, write_keypair
from codec.model_files import read_model_slots
from codec.payload import encode_payload
from codec.quantise import dense_record, lowrank_record
from codec.records import Record
from codec.release import Release
from codec.update_file import UpdateFile, write_update_file
from codec.weights import encode_weights
from publisher.release.build import full_release, update_release

DAY = 86400
#: A small two-layer model's tensors.
SMALL_SHAPES = {"fc1.weight": (48, 32), "fc1.bias": (48,), "fc2.weight": (10, 48), "fc2.bias": (10,)}


def random_model_file(seed: int, shapes: Mapping[str, tuple[int, ...]] = SMALL_SHAPES) -> bytes:
    """An RCW model file of standard normal float32 tensors (drawn as float32: half the memory of a cast)."""
    rng = np.random.default_rng(seed)
    return encode_weights({name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()})


def random_records(
    shapes: Mapping[str, tuple[int, ...]], rank: int, seed: int = 1, factor_scale: float = 0.01
) -> list[Record]:
    """Records for tensors of ``shapes``: rank-``rank`` lowrank records (factor entries N(0, factor_scale²))
    for matrices, 8-bit dense deltas (N(0, 0.01²)) for everything else."""
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    for name, shape in shapes.items():
        if len(shape) == 2:
            u = rng.standard_normal((shape[0], rank)).astype(np.float32) * factor_scale
            v = rng.standard_normal((rank, shape[1])).astype(np.float32) * factor_scale
            records.append(lowrank_record(name, shape, u, v))
        else:
            records.append(dense_record(name, rng.standard_normal(shape) * 0.01, dtype="i8"))
    return records


def random_update(base: bytes, seed: int, rank: int = 4) -> UpdateFile:
    """A delta update of ``base`` (RCW or .tflite) for its own tensors: ``random_records`` with factor
    entries of N(0, 0.1²), small next to unit weights."""
    return _delta(base, _records_for(base, seed, rank))[0]


def update_of(base: bytes, records: list[Record]) -> UpdateFile:
    """A delta update file of ``records`` for ``base``, naming its base and target sha256."""
    return _delta(base, records)[0]


def make_delta_release(base: bytes, seed: int, model: str, version: int, key: SigningKey,
                       **options: object) -> tuple[Release, bytes]:
    """A signed release of ``random_update(base, seed)`` as ``version`` of ``model`` (lifetime a day unless
    given), and the model file it makes."""
    update, target = _delta(base, _records_for(base, seed, rank=4))
    options.setdefault("lifetime_s", DAY)
    return update_release(update, model=model, version=version, key=key, **options), target


def _records_for(base: bytes, seed: int, rank: int) -> list[Record]:
    shapes = {name: slot.shape for name, slot in read_model_slots(memoryview(base)).items()}
    return random_records(shapes, rank, seed, factor_scale=0.1)


def _delta(base: bytes, records: list[Record]) -> tuple[UpdateFile, bytes]:
    payload, length = encode_payload(records)
    target, target_sha = apply_to_bytes(base, payload, length)
    return UpdateFile(payload, length, "delta", hashlib.sha256(base).digest(), target_sha), target


def make_full_release(model_file: bytes, model: str, version: int, key: SigningKey, **options: object) -> Release:
    """A signed release carrying the whole of ``model_file`` (lifetime a day unless given)."""
    options.setdefault("lifetime_s", DAY)
    return full_release(model_file, model=model, version=version, key=key, **options)


def make_keypair(directory: Path) -> tuple[SigningKey, Path]:
    """A fresh signing key and the path of its public key file (for a device's trusted_keys)."""
    key = generate_signing_key()
    _, public = write_keypair(Path(directory), key)
    return key, public


def write_small_update(workdir: Path, width: int = 64, rank: int = 4, seed: int = 0) -> tuple[Path, Path, Path]:
    """A small RCW model (a width×width layer and a 10×width head) and a rank-``rank`` update of its first
    layer: (base file, .rcu update, target file) written under ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = encode_weights({
        "fc1.weight": rng.standard_normal((width, width)).astype(np.float32) / np.sqrt(width),
        "fc1.bias": np.zeros(width, np.float32),
        "fc2.weight": rng.standard_normal((10, width)).astype(np.float32) / np.sqrt(width),
        "fc2.bias": np.zeros(10, np.float32),
    })
    record = lowrank_record("fc1.weight", (width, width), rng.normal(size=(width, rank)) * 0.01,
                            rng.normal(size=(rank, width)))
    payload, length = encode_payload([record])
    target, target_sha = apply_to_bytes(base, payload, length)
    paths = workdir / "base.rcw", workdir / "update.rcu", workdir / "target.rcw"
    paths[0].write_bytes(base)
    update = UpdateFile(payload, length, "delta", hashlib.sha256(base).digest(), target_sha, {"kind": "synthetic"})
    write_update_file(paths[1], update)
    paths[2].write_bytes(target)
    return paths
