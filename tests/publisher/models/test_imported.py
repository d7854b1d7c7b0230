"""Models made by TensorFlow's converter (tests/fixtures/tflite, made by make_fixtures.sh) imported as torch
modules: they compute what TensorFlow's interpreter computed, and an update trained on them with no --arch and
no .pt patches the very file to the signed sha256."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from codec.apply import apply_payload
from codec.tflite_graph import graph_binding
from codec.update_file import read_update_file
from device_client.tflite_runtime import run
from publisher.errors import ModelError
from publisher.models.imported import import_tflite
from publisher.training.loop import accuracy
from rankcast.cli import main

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tflite"
INFO = json.loads((FIXTURES / "fixtures.json").read_text())
IMPORTABLE = ["keras_mlp", "keras_cnn", "keras_blocks_b1"]


def _digits(stem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixtures' evaluation split, in the layout of the file (flat for the MLP, NHWC otherwise)."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[1437:, ..., None]
    x = x.reshape(len(x), -1) if stem == "keras_mlp" else x
    return torch.from_numpy(x), torch.from_numpy(digits.target[1437:].astype(np.int64))


@pytest.mark.parametrize("stem", IMPORTABLE)
def test_the_module_computes_what_tensorflows_interpreter_computed(stem: str) -> None:
    model = import_tflite((FIXTURES / f"{stem}.tflite").read_bytes())
    recorded = np.load(FIXTURES / "digits_logits.npz")
    inputs = recorded["inputs"].reshape(16, -1) if stem == "keras_mlp" else recorded["inputs"]
    with torch.no_grad():
        probabilities = torch.softmax(model(torch.from_numpy(inputs)), dim=-1).numpy()
    assert model.ends_in_softmax
    np.testing.assert_allclose(probabilities, recorded[stem], atol=1e-5)
    assert accuracy(model, *_digits(stem)) == pytest.approx(INFO["files"][f"{stem}.tflite"]["tflite_eval_accuracy"],
                                                            abs=1e-4)


@pytest.mark.parametrize("stem", IMPORTABLE)
def test_the_parameters_are_the_buffers_devices_patch(stem: str) -> None:
    data = (FIXTURES / f"{stem}.tflite").read_bytes()
    state = import_tflite(data).state_dict()
    bound = {entry.name: entry.shape for entry in graph_binding(data).tensors}
    assert {name: tuple(value.shape) for name, value in state.items()} == bound


def test_a_free_batch_size_is_refused_naming_its_operators() -> None:
    with pytest.raises(ModelError, match="GATHER, PACK, REDUCE_PROD, SHAPE, STRIDED_SLICE.*batch_size=1"):
        import_tflite((FIXTURES / "keras_blocks.tflite").read_bytes())


def test_a_file_that_is_not_tflite_is_refused() -> None:
    with pytest.raises(ModelError, match="not a TFLite file"):
        import_tflite(b"RCW1" + bytes(64))


def test_import_tflite_lists_operators_and_checks_against_the_runtime(tmp_path: Path, capsys) -> None:
    x, y = _digits("keras_cnn")
    np.savez(tmp_path / "eval.npz", x=x.numpy(), y=y.numpy())
    assert main(["import-tflite", str(FIXTURES / "keras_cnn.tflite"), "--eval", str(tmp_path / "eval.npz")]) == 0
    out = capsys.readouterr().out
    assert "op2    DEPTHWISE_CONV_2D  op2.weight 16x1x3x3, op2.bias 16" in out
    assert "input 1x8x8x1" in out and "8 parameters (978 values)" in out
    assert f"accuracy {INFO['files']['keras_cnn.tflite']['tflite_eval_accuracy']:.1%}" in out
    difference = float(out.split("largest difference from the TFLite runtime ")[1].split()[0])
    assert difference < 1e-5


def test_update_build_without_arch_needs_a_tflite_and_no_base(tmp_path: Path, capsys) -> None:
    common = ["update", "build", "--train", "t.npz", "--eval", "t.npz", "--out", str(tmp_path / "u.rcu")]
    (tmp_path / "m.rcw").write_bytes(b"RCW1" + bytes(60))
    assert main([*common, "--deployed", str(tmp_path / "m.rcw")]) != 0
    assert "error [bad-config]: --arch MODULE:FACTORY is needed" in capsys.readouterr().err
    assert main([*common, "--deployed", str(FIXTURES / "keras_cnn.tflite"), "--base", str(tmp_path / "b.pt")]) != 0
    assert "error [bad-config]: --base goes with --arch" in capsys.readouterr().err
    assert not (tmp_path / "u.rcu").exists()


@pytest.mark.slow
def test_an_update_built_on_the_file_alone_patches_it_to_the_signed_sha256(tmp_path: Path, capsys) -> None:
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[..., None]
    y = digits.target.astype(np.int64)
    np.savez(tmp_path / "train.npz", x=x[:1437], y=y[:1437])
    np.savez(tmp_path / "eval.npz", x=x[1437:], y=y[1437:])
    deployed = tmp_path / "v1.tflite"
    shutil.copy(FIXTURES / "keras_blocks_b1.tflite", deployed)
    assert main(["update", "build", "--deployed", str(deployed), "--train", str(tmp_path / "train.npz"),
                 "--eval", str(tmp_path / "eval.npz"), "--rank", "2", "--epochs", "3", "--train-biases",
                 "--out", str(tmp_path / "v2.rcu"), "--out-model", str(tmp_path / "v2.tflite"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    update = read_update_file(tmp_path / "v2.rcu")
    assert update.base_sha256 == hashlib.sha256(deployed.read_bytes()).digest()
    assert summary["accuracy_before"] == pytest.approx(INFO["files"]["keras_blocks_b1.tflite"]["tflite_eval_accuracy"],
                                                       abs=1e-4)

    device_copy = tmp_path / "device.tflite"
    shutil.copy(deployed, device_copy)
    digest = apply_payload(device_copy, update.payload, update.decompressed_length)  # no binding given
    assert digest == update.target_sha256 == hashlib.sha256((tmp_path / "v2.tflite").read_bytes()).digest()
    patched = import_tflite(device_copy.read_bytes())
    with torch.no_grad():
        expected = torch.softmax(patched(torch.from_numpy(x[1437:1469])), dim=-1).numpy()
    np.testing.assert_allclose(run(device_copy, x[1437:1469]), expected, atol=1e-5)
    assert accuracy(patched, torch.from_numpy(x[1437:]), torch.from_numpy(y[1437:])) == pytest.approx(
        summary["accuracy_after"], abs=1e-9)
