"""Running the device's current model: the Predictor (reloaded after a commit) and `rankcast device predict`.
Torch-free: runs in the device environment too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codec.topics import BrokerUrl
from codec.update_file import updated_model_file
from device_client.config import BrokerSettings, DeviceConfig
from device_client.errors import BadInputError, NotInstalledError, NotRunnableError
from device_client.predictor import Predictor
from device_client.store import FileModelStore
from publisher.release.build import update_release
from rankcast.cli import main
from simulator.testbed import synthetic
from simulator.testbed.devices import install_model, render_config
from simulator.testbed.synthetic_tflite import INPUTS, make_tflite, reference_outputs

MODEL = "digits"

X = np.random.default_rng(3).standard_normal((4, INPUTS)).astype(np.float32)


def test_the_predictor_runs_the_installed_tflite_model(tmp_path: Path) -> None:
    model_file = make_tflite(21)
    install_model(tmp_path / "models", MODEL, model_file)
    predictor = Predictor(FileModelStore(tmp_path / "models"), MODEL)
    np.testing.assert_allclose(predictor.predict(X), reference_outputs(model_file, X), atol=1e-5)
    np.testing.assert_array_equal(predictor.predict(X[0]), predictor.predict(X[:1]))  # one example, no batch axis
    assert predictor.loaded.version == 1
    for bad in (np.zeros((2, 5), np.float32), np.zeros((2, 2, INPUTS)), np.array(["a"] * INPUTS)):
        with pytest.raises(BadInputError):
            predictor.predict(bad)


def test_the_predictor_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(NotInstalledError):
        Predictor(FileModelStore(tmp_path / "none"), MODEL).predict(X)
    install_model(tmp_path / "models", MODEL, synthetic.random_model_file(1))
    with pytest.raises(NotRunnableError):
        Predictor(FileModelStore(tmp_path / "models"), MODEL).predict(X)


def test_the_device_predictor_runs_the_new_model_after_a_commit(make_device, retained, signing) -> None:
    base = make_tflite(22)
    device = make_device(installed=False)
    install_model(device.config.model_dir, MODEL, base)
    predictor = device.predictor(MODEL)
    before = predictor.predict(X)
    update = synthetic.random_update(base, 23, rank=2)
    retained.add(update_release(update, model=MODEL, version=2, key=signing[0], lifetime_s=synthetic.DAY))
    retained.pump(device)
    assert predictor.loaded.version == 2, "reloaded at commit"
    after = predictor.predict(X)
    expected = reference_outputs(updated_model_file(base, update), X)
    np.testing.assert_allclose(after, expected, atol=1e-5)
    assert not np.allclose(after, before)
    FileModelStore(device.config.model_dir).rollback(MODEL)  # e.g. by `rankcast device rollback`
    np.testing.assert_array_equal(predictor.predict(X), before)
    assert predictor.loaded.version == 1


def _config(tmp_path: Path, signing) -> Path:
    config = tmp_path / "device.toml"
    config.write_text(render_config(DeviceConfig("pump-1", tmp_path / "models", (signing[1],), (MODEL,),
                                                 BrokerSettings(BrokerUrl.parse("mqtts://localhost:8883")))))
    return config


def test_device_predict_prints_classes_and_scores(tmp_path: Path, signing, capsys) -> None:
    config, model_file = _config(tmp_path, signing), make_tflite(24)
    (tmp_path / "model.tflite").write_bytes(model_file)
    assert main(["device", "install", "--config", str(config), "--model", MODEL, "--file",
                 str(tmp_path / "model.tflite"), "--version", "1"]) == 0
    assert "model.tflite" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", X)
    predict = ["device", "predict", "--config", str(config), "--model", MODEL, "--input", str(tmp_path / "x.npy")]
    expected = reference_outputs(model_file, X)
    assert main(predict) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{MODEL} version 1") and len(lines) == 1 + len(X)
    assert [int(line.split()[2]) for line in lines[1:]] == list(expected.argmax(axis=1))
    assert main([*predict, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == 1 and [p["argmax"] for p in report["predictions"]] == list(expected.argmax(axis=1))
    np.testing.assert_allclose([p["scores"] for p in report["predictions"]], expected, atol=1e-5)


def test_device_predict_explains_bad_inputs_and_unrunnable_models(tmp_path: Path, signing, capsys) -> None:
    config = _config(tmp_path, signing)
    install_model(tmp_path / "models", MODEL, make_tflite(25))
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5), np.float32))
    (tmp_path / "text.npy").write_text("not numpy")
    for name, code in (("wrong.npy", "bad-input"), ("text.npy", "bad-input")):
        assert main(["device", "predict", "--config", str(config), "--model", MODEL,
                     "--input", str(tmp_path / name)]) == 1
        assert f"[{code}]" in capsys.readouterr().err
    (tmp_path / "base.rcw").write_bytes(synthetic.random_model_file(1))
    FileModelStore(tmp_path / "models").install(MODEL, tmp_path / "base.rcw", 2)
    assert main(["device", "predict", "--config", str(config), "--model", MODEL,
                 "--input", str(tmp_path / "wrong.npy")]) == 1
    assert "[not-runnable]" in capsys.readouterr().err
    (tmp_path / "junk.bin").write_bytes(b"junk" * 10)
    assert main(["device", "install", "--config", str(config), "--model", MODEL, "--file",
                 str(tmp_path / "junk.bin"), "--version", "3"]) == 1
    assert "[bad-format]" in capsys.readouterr().err
