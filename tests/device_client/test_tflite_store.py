"""A device whose model is a .tflite file: installed by content, patched in place by delta releases,
replaced by full releases (also from or to RCW), rolled back. Torch-free: runs in the device environment."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from codec.apply import apply_payload
from codec.errors import FormatError
from codec.model_files import model_kind, model_suffix, read_model_slots
from codec.tflite import tflite_slots
from device_client.store import FileModelStore
from publisher.release.build import full_release, update_release
from simulator.testbed import synthetic
from simulator.testbed.devices import install_model
from simulator.testbed.synthetic_tflite import INPUTS, make_tflite, reference_outputs

MODEL = "digits"


def test_model_files_are_told_apart_by_content() -> None:
    tflite, rcw = make_tflite(1), synthetic.random_model_file(1)
    assert (model_kind(tflite), model_suffix(tflite)) == ("tflite", ".tflite")
    assert (model_kind(rcw), model_suffix(rcw)) == ("rcw", ".rcw")
    assert model_kind(b"GIF89a-not-a-model") is None and model_suffix(b"", ".bin") == ".bin"
    assert read_model_slots(memoryview(tflite)) == tflite_slots(memoryview(tflite))
    with pytest.raises(FormatError):
        read_model_slots(memoryview(b"\x00" * 64))


def test_the_default_slot_reader_patches_a_tflite_file_like_the_explicit_one(tmp_path) -> None:
    base = make_tflite(2)
    update = synthetic.random_update(base, 3, rank=2)
    explicit, detected = tmp_path / "explicit.tflite", tmp_path / "detected"
    explicit.write_bytes(base)
    detected.write_bytes(base)
    digest = apply_payload(explicit, update.payload, update.decompressed_length, slot_reader=tflite_slots)
    assert apply_payload(detected, update.payload, update.decompressed_length) == digest == update.target_sha256


def test_install_keeps_a_tflite_file_under_its_own_suffix(tmp_path) -> None:
    model_file = make_tflite(1)
    path = install_model(tmp_path / "models", MODEL, model_file).path
    store = FileModelStore(tmp_path / "models")
    assert path.name == "model.tflite" and path.read_bytes() == model_file
    assert store.model_path(MODEL) == path and store.current(MODEL).sha256 == hashlib.sha256(model_file).digest()
    assert json.loads((path.parent / "state.json").read_text())["current"]["suffix"] == ".tflite"


def test_a_delta_release_patches_the_running_tflite_file(make_device, retained, signing) -> None:
    base = make_tflite(4)
    device = make_device(installed=False)
    install_model(device.config.model_dir, MODEL, base)
    update = synthetic.random_update(base, 5, rank=2)
    retained.add(update_release(update, model=MODEL, version=2, key=signing[0], chunk_size=256,
                                lifetime_s=synthetic.DAY))
    retained.pump(device)
    store = FileModelStore(device.config.model_dir)
    assert device.status().last_error is None and device.running_models()[MODEL][0] == 2
    running = store.model_path(MODEL)
    assert running.name == "model.tflite" and (running.parent / "previous.tflite").read_bytes() == base
    assert hashlib.sha256(running.read_bytes()).digest() == update.target_sha256
    assert len(running.read_bytes()) == len(base)  # patched in place: no rebuild
    x = np.random.default_rng(0).standard_normal((5, INPUTS)).astype(np.float32)
    np.testing.assert_allclose(device.predictor(MODEL).predict(x), reference_outputs(running.read_bytes(), x),
                               atol=1e-5)


def test_a_full_release_installs_a_first_tflite_model(make_device, retained, signing) -> None:
    device = make_device(installed=False)
    model_file = make_tflite(6)
    retained.add(full_release(model_file, model=MODEL, version=1, key=signing[0], lifetime_s=synthetic.DAY))
    retained.pump(device)
    path = FileModelStore(device.config.model_dir).model_path(MODEL)
    assert path.name == "model.tflite" and path.read_bytes() == model_file
    assert device.running_models()[MODEL][0] == 1


def test_a_full_release_may_change_the_file_kind_and_rollback_restores_the_old_kind(
    make_device, retained, signing, base_model
) -> None:
    device = make_device()  # runs the RCW base_model as version 1
    model_dir = device.config.model_dir / MODEL
    model_file = make_tflite(7)
    retained.add(full_release(model_file, model=MODEL, version=2, key=signing[0], lifetime_s=synthetic.DAY))
    retained.pump(device)
    assert (model_dir / "model.tflite").read_bytes() == model_file
    assert (model_dir / "previous.rcw").read_bytes() == base_model and not (model_dir / "model.rcw").exists()
    restored = FileModelStore(device.config.model_dir).rollback(MODEL)
    assert restored.path == model_dir / "model.rcw" and restored.path.read_bytes() == base_model
    assert not (model_dir / "model.tflite").exists() and device.running_models()[MODEL][0] == 1
