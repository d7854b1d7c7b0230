"""Successive updates from the command line alone: `update build --out-weights --out-model` writes what the
next `update build` takes as --base and --deployed, and says what it did (progress on stderr, a summary)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from codec.payload import decode_payload
from codec.update_file import read_update_file, updated_model_file
from publisher.training.reconstruct import load_file
from rankcast.cli import main

_COMMON = ["update", "build", "--arch", "tinynet:build", "--train", "train.npz", "--eval", "eval.npz",
           "--rank", "2", "--epochs", "3"]


def _tinynet() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def _sha256(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rcw", "tflite"])
def test_v3_builds_on_the_files_v2_wrote(files, monkeypatch, capsys, kind: str) -> None:
    folder = files["base.pt"].parent
    monkeypatch.chdir(folder)
    v1 = folder / f"v1.{kind}"
    if kind == "rcw":
        v1.write_bytes(files["deployed.rcw"].read_bytes())
    else:
        from publisher.tflite.export import export_tflite

        model = _tinynet()
        model.load_state_dict(torch.load(files["base.pt"]))
        export_tflite(model.eval(), (1, 16), v1)

    assert main([*_COMMON, "--base", "base.pt", "--deployed", v1.name, "--out", "v2.rcu",
                 "--out-weights", "v2.pt", "--out-model", f"v2.{kind}"]) == 0
    out, err = capsys.readouterr()
    assert "3 epochs on 160 examples" in err and "epoch 1/3" in err and "epoch 3/3" in err
    assert "wrote v2.rcu" in out and "ranks" in out and "->" in out and f"applies to {v1.name}" in out
    assert "v2.pt" in out and f"v2.{kind}" in out

    v2 = read_update_file(folder / "v2.rcu")
    v2_model = (folder / f"v2.{kind}").read_bytes()
    assert updated_model_file(v1.read_bytes(), v2) == v2_model  # what a device running v1 ends up with
    state = torch.load(folder / "v2.pt")
    assert all(torch.equal(state[name], value) for name, value in load_file(_tinynet(), v2_model).state_dict().items())
    assert not torch.equal(state["1.weight"], torch.load(files["base.pt"])["1.weight"])

    assert main([*_COMMON, "--base", "v2.pt", "--deployed", f"v2.{kind}", "--out", "v3.rcu", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    v3 = read_update_file(folder / "v3.rcu")
    assert v3.base_sha256 == _sha256(folder / f"v2.{kind}") == v2.target_sha256
    assert summary["accuracy_before"] == v2.info["accuracy_after"]  # v3 starts from exactly the model v2 made


_BNNET = """
from torch import nn

def build():
    return nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6),
                         nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
"""


@pytest.mark.slow
def test_a_batch_norm_model_chains_on_its_folded_weights_with_biases(files, monkeypatch, capsys) -> None:
    folder = files["base.pt"].parent
    monkeypatch.chdir(folder)
    (folder / "bnnet.py").write_text(_BNNET)
    monkeypatch.syspath_prepend(str(folder))
    import bnnet  # noqa: PLC0415 - written by this test

    model = bnnet.build()
    model.train()(torch.randn(64, 16))  # batch norm with statistics of its own
    torch.save(model.eval().state_dict(), "base.pt")
    monkeypatch.delitem(__import__("sys").modules, "bnnet")
    common = [*_COMMON[:2], "--arch", "bnnet:build", *_COMMON[4:]]
    assert main(["export-tflite", "--arch", "bnnet:build", "--weights", "base.pt", "--input-shape", "1,16",
                 "--out", "v1.tflite"]) == 0
    assert main([*common, "--base", "base.pt", "--deployed", "v1.tflite", "--train-biases", "--out", "v2.rcu",
                 "--out-weights", "v2.pt", "--out-model", "v2.tflite"]) == 0
    assert "every bias and norm parameter as i8 deltas" in capsys.readouterr().out

    v2 = read_update_file(folder / "v2.rcu")
    sent = {record.name for record in decode_payload(v2.payload, v2.decompressed_length, layout=v2.layout())}
    assert {"1.bias", "6.bias"} <= sent  # the bias batch norm's shift was folded into, and the linear's
    state = torch.load("v2.pt")
    assert "2.running_mean" not in state and "1.bias" in state  # the folded state_dict
    assert main([*common, "--base", "v2.pt", "--deployed", "v2.tflite", "--out", "v3.rcu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy_before"] == v2.info["accuracy_after"]
    assert read_update_file(folder / "v3.rcu").base_sha256 == v2.target_sha256
