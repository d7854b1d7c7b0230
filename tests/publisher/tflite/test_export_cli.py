"""`rankcast export-tflite`: builds the model, loads the weights, writes the file, prints the binding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from device_client.tflite_runtime import run
from rankcast.cli import main

_MODELS = """
from torch import nn

def small():
    return nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))

def normalised():
    return nn.Sequential(nn.Linear(8, 4), nn.LayerNorm(4))
"""


@pytest.fixture
def arch_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"cli_models_{abs(hash(tmp_path))}"
    (tmp_path / f"{name}.py").write_text(_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_export_writes_a_model_with_the_given_weights(arch_module: str, tmp_path: Path, capsys) -> None:
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "small.tflite"
    code = main(["export-tflite", "--arch", f"{arch_module}:small", "--weights", str(tmp_path / "w.pt"),
                 "--input-shape", "1,8", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "0.weight" in printed and "OI -> OI" in printed and "4 parameters bound" in printed
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.abs(run(out, x) - expected).max() <= 1e-5


def test_an_unknown_factory_is_an_operator_error(arch_module: str, tmp_path: Path, capsys) -> None:
    code = main(["export-tflite", "--arch", f"{arch_module}:missing", "--input-shape", "1,8",
                 "--out", str(tmp_path / "m.tflite")])
    assert code == 1 and "[bad-model]" in capsys.readouterr().err


def test_an_unsupported_layer_is_named(arch_module: str, tmp_path: Path, capsys) -> None:
    code = main(["export-tflite", "--arch", f"{arch_module}:normalised", "--input-shape", "1,8",
                 "--out", str(tmp_path / "m.tflite")])
    error = capsys.readouterr().err
    assert code == 1 and "[unsupported-layer]" in error and "1 (LayerNorm)" in error
    assert not (tmp_path / "m.tflite").exists()
