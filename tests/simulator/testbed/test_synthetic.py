"""Synthetic model files, updates and releases: each names exactly the files it makes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from codec.model_files import read_model_slots
from codec.update_file import read_update_file, updated_model_file
from simulator.testbed import synthetic
from simulator.testbed.synthetic_tflite import make_tflite


def test_a_random_update_names_its_base_and_makes_its_target() -> None:
    for base in (synthetic.random_model_file(1), make_tflite(2)):
        update = synthetic.random_update(base, 3)
        assert update.base_sha256 == hashlib.sha256(base).digest()
        assert hashlib.sha256(updated_model_file(base, update)).digest() == update.target_sha256
        assert len(updated_model_file(base, update)) == len(base)


def test_a_delta_release_pins_the_file_it_returns(tmp_path: Path) -> None:
    key, public = synthetic.make_keypair(tmp_path / "keys")
    base = synthetic.random_model_file(5, {"w": (8, 6), "b": (8,)})
    release, target = synthetic.make_delta_release(base, 6, "m", 2, key, chunk_size=256)
    manifest = release.manifest
    assert manifest.target_sha256 == hashlib.sha256(target).digest() and manifest.base_version == 1
    assert manifest.expires - manifest.created == synthetic.DAY and public.is_file()
    assert synthetic.make_full_release(target, "m", 3, key).manifest.target_sha256 == manifest.target_sha256


def test_random_records_cover_every_tensor_and_seeds_differ() -> None:
    shapes = {name: slot.shape for name, slot in read_model_slots(memoryview(synthetic.random_model_file(0))).items()}
    records = synthetic.random_records(shapes, rank=2, seed=1)
    assert [r.name for r in records] == list(shapes)
    assert synthetic.random_records(shapes, 2, seed=1) == records != synthetic.random_records(shapes, 2, seed=2)


def test_the_small_update_files_agree(tmp_path: Path) -> None:
    base, rcu, target = synthetic.write_small_update(tmp_path, width=16, rank=2)
    update = read_update_file(rcu)
    assert updated_model_file(base.read_bytes(), update) == target.read_bytes()
    assert update.info == {"kind": "synthetic"}
