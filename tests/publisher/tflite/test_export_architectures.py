"""Standard CNNs as people write them (batch norm, functional calls, view, squeeze-excite, cat) export, run in
LiteRT as in PyTorch, and take an update patched in place to exactly the file the publisher signs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codec.apply import apply_payload
from codec.payload import decode_payload
from codec.tflite import tflite_slots
from device_client.tflite_runtime import run
from publisher.models.folding import ChannelAffine, fold_batchnorm
from publisher.tflite.export import export_tflite
from publisher.training.factorised import FactorConfig
from publisher.training.reconstruct import updated_model
from publisher.training.update import UpdateConfig, build_update
from simulator.bench import architectures

RELATIVE_TOLERANCE = 1e-4
INPUT_SHAPE = (1, 1, 32, 32)


class Spellings(nn.Module):
    """Every other supported spelling: a standalone batch norm, torch.cat, SiLU, sigmoid, tanh, F.pad, scalar
    arithmetic, mean over H and W, reshape through a 3-D view, hardtanh as relu6."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.norm = nn.BatchNorm2d(12)  # after a cat: nothing to fold into
        self.branch = nn.Conv2d(12, 8, 3, stride=2)
        self.norm1d = nn.BatchNorm1d(8)  # after a mean: nothing to fold into
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        x = self.norm(torch.cat([F.silu(a), torch.tanh(a).sigmoid()], dim=1))
        x = F.hardtanh(self.branch(F.pad(x, (1, 0, 1, 0))), 0.0, 6.0) * 0.5 + 1
        pooled = x.reshape(x.shape[0], 8, -1).mean(-1) - torch.mean(x, dim=[2, 3]) / 2
        return self.fc(self.norm1d(pooled))


CASES: dict[str, Callable[[], nn.Module]] = {
    "mobilenet_v2": architectures.mobilenet_v2,
    "mobilenet_v3_small": architectures.mobilenet_v3_small,
    "resnet18": lambda: architectures.resnet18(width=16),
    "resnet20": architectures.resnet20,
    "spellings": Spellings,
}


def _trained_statistics(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with batch-norm statistics and affine parameters away from their defaults, so folding matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) * 0.4 - 0.2)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(size, generator=generator) * 0.2 - 0.1)
    return model.eval()


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return _trained_statistics(CASES[name](), seed=1)


def _inputs(rows: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, *INPUT_SHAPE[1:], generator=torch.Generator().manual_seed(seed))


def _relative_error(outputs: np.ndarray, expected: np.ndarray) -> float:
    assert outputs.shape == expected.shape
    return float(np.abs(outputs - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("name", list(CASES))
def test_the_exported_file_computes_what_pytorch_computes(name: str, tmp_path: Path) -> None:
    model = _model(name)
    export_tflite(model, INPUT_SHAPE, tmp_path / "model.tflite")
    x = _inputs(4, seed=2)
    with torch.no_grad():
        expected = model(x).numpy()
    assert _relative_error(run(tmp_path / "model.tflite", x.numpy()), expected) <= RELATIVE_TOLERANCE


@pytest.mark.parametrize("name", list(CASES))
def test_the_binding_holds_the_folded_parameters(name: str, tmp_path: Path) -> None:
    model = _model(name)
    folded = fold_batchnorm(model)
    binding = export_tflite(model, INPUT_SHAPE, tmp_path / "model.tflite")
    assert {entry.name for entry in binding.tensors} == set(folded.state_dict())
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in folded.modules())
    standalone = [m for m in folded.modules() if isinstance(m, ChannelAffine)]
    assert len(standalone) == (2 if name == "spellings" else 0)


def test_folding_keeps_the_outputs() -> None:
    model = _model("resnet20")
    x = _inputs(3, seed=3)
    with torch.no_grad():
        assert torch.allclose(fold_batchnorm(model)(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_an_update_with_biases_patches_the_file_to_the_signed_sha256(name: str, tmp_path: Path) -> None:
    model, path = _model(name), tmp_path / "model.tflite"
    export_tflite(model, INPUT_SHAPE, path)
    base_file = path.read_bytes()
    x, y = _inputs(48, seed=4), torch.randint(0, 10, (48,), generator=torch.Generator().manual_seed(5))
    config = UpdateConfig(rank=2, epochs=1, factors=FactorConfig(train_small=True))
    built = build_update(model, (x, y), (x[:16], y[:16]), config, base_file)
    layout = tflite_slots(memoryview(base_file))  # the payload refers to the file's tensors by position
    sent = {record.name for record in decode_payload(built.payload, built.decompressed_length, layout=layout)}
    assert {name for name in fold_batchnorm(model).state_dict() if name.endswith(".bias")} <= sent
    digest = apply_payload(path, built.payload, built.decompressed_length, slot_reader=tflite_slots)
    assert digest == hashlib.sha256(built.target_file).digest() == hashlib.sha256(path.read_bytes()).digest()
    assert path.read_bytes() != base_file
    rebuilt = updated_model(fold_batchnorm(model), base_file, built.payload, built.decompressed_length)
    with torch.no_grad():
        expected = rebuilt(x[:4]).numpy()
    assert _relative_error(run(path, x[:4].numpy()), expected) <= RELATIVE_TOLERANCE
