"""The exporter: TFLite outputs equal PyTorch's, the file is well formed, unsupported layers are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from torch import nn

from codec.tflite import read_binding
from codec.tflite_model import parse_tflite
from device_client.tflite_runtime import run
from publisher.errors import ExportError, UnsupportedLayerError
from publisher.tflite.export import export_tflite, export_tflite_bytes

TOLERANCE = 1e-4


class Residual(nn.Module):
    """x + conv(x), then ReLU: the residual add the exporter lowers to ADD."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv(x))


def _max_error(model: nn.Module, input_shape: tuple[int, ...], path: Path, rows: int = 5) -> float:
    export_tflite(model, input_shape, path)
    x = torch.randn(rows, *input_shape[1:], generator=torch.Generator().manual_seed(rows))
    with torch.no_grad():
        expected = model(x).numpy()
    outputs = run(path, x.numpy())
    assert outputs.shape == expected.shape
    return float(np.abs(outputs - expected).max())


@pytest.mark.parametrize("rows", [1, 5])
def test_mlp_outputs_match_pytorch(mlp: nn.Module, tmp_path: Path, rows: int) -> None:
    assert _max_error(mlp, (1, 64), tmp_path / "mlp.tflite", rows) <= TOLERANCE


@pytest.mark.parametrize("rows", [1, 5])
def test_cnn_outputs_match_pytorch(cnn: nn.Module, tmp_path: Path, rows: int) -> None:
    assert _max_error(cnn, (1, 3, 16, 16), tmp_path / "cnn.tflite", rows) <= TOLERANCE


@pytest.mark.parametrize("layers", [
    [Residual(3), nn.Conv2d(3, 4, 1)],
    [nn.Conv2d(3, 6, 3, padding="same", groups=3, dilation=2), nn.Softmax(dim=1)],
    [nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(0, 2), bias=False), nn.AvgPool2d(3, stride=2, padding=1)],
    [nn.Conv2d(3, 4, 2, padding="valid"), nn.MaxPool2d(3, stride=2), nn.Identity(), nn.Dropout()],
    [nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 6), nn.ReLU6(), nn.Linear(6, 3), nn.Softmax(-1)],
], ids=["residual", "dilated-depthwise-same-softmax", "padded-strided", "valid-pools-identity", "softmax-head"])
def test_more_layer_combinations_match_pytorch(layers: list[nn.Module], tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(*layers).eval()
    assert _max_error(model, (1, 3, 16, 16), tmp_path / "model.tflite") <= TOLERANCE


def test_stored_tensor_shapes_are_those_the_runtime_computes(cnn: nn.Module) -> None:
    data, _ = export_tflite_bytes(cnn, (1, 3, 16, 16))
    interpreter = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    declared = {tensor.name: tensor.shape for tensor in parse_tflite(data).tensors}
    for detail in interpreter.get_tensor_details():
        assert tuple(detail["shape"]) == declared[detail["name"]], detail["name"]


def test_the_parser_agrees_with_the_official_schema_reader(cnn: nn.Module) -> None:
    data, _ = export_tflite_bytes(cnn, (1, 3, 16, 16))
    official = schema.Model.GetRootAs(data, 0)
    ours = parse_tflite(data)
    assert len(ours.buffers) == official.BuffersLength()
    for index, span in enumerate(ours.buffers):
        buffer = official.Buffers(index)
        assert span.length == buffer.DataLength()
        if span.length:
            assert data[span.offset : span.end] == buffer.DataAsNumpy().tobytes()
    subgraph = official.Subgraphs(0)
    for index, tensor in enumerate(ours.tensors):
        theirs = subgraph.Tensors(index)
        assert (tensor.name, tensor.buffer, tensor.type) == (theirs.Name().decode(), theirs.Buffer(), theirs.Type())
        assert tensor.shape == tuple(theirs.ShapeAsNumpy())


def test_the_returned_binding_is_the_one_in_the_file(cnn: nn.Module, tmp_path: Path) -> None:
    binding = export_tflite(cnn, (1, 3, 16, 16), tmp_path / "cnn.tflite")
    assert read_binding((tmp_path / "cnn.tflite").read_bytes()) == binding
    assert {entry.name for entry in binding.tensors} == set(cnn.state_dict())
    layouts = {entry.name: entry.layout for entry in binding.tensors}
    assert layouts["0.weight"] == "OIHW -> OHWI" and layouts["2.weight"] == "OIHW -> IHWO"
    assert layouts["9.weight"] == "OI -> OI" and layouts["9.bias"] == "O -> O"


def test_unsupported_layers_are_each_named() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm(14), nn.Conv2d(4, 4, 3, groups=2), nn.GELU()).eval()
    with pytest.raises(UnsupportedLayerError) as caught:
        export_tflite_bytes(model, (1, 3, 16, 16))
    assert caught.value.code == "unsupported-layer"
    assert [layer.split(" ")[0] for layer in caught.value.layers] == ["1", "2", "3"]
    assert "LayerNorm" in str(caught.value) and "GELU" in str(caught.value) and "groups=2" in str(caught.value)


class _Functions(nn.Module):
    """Calls the exporter refuses: exp, a slice, dropout left in training, a mean over the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.exp(x)[:, :2]
        return torch.nn.functional.dropout(x, 0.5) + x.mean(0, keepdim=True)


def test_unsupported_functions_and_shapes_are_named() -> None:
    with pytest.raises(UnsupportedLayerError) as caught:
        export_tflite_bytes(_Functions(), (1, 4))
    assert [layer.split(" ")[0] for layer in caught.value.layers] == ["exp", "getitem", "dropout", "mean"]
    assert "function exp" in str(caught.value) and "training=self.training" in str(caught.value)
    assert "batch dimension" in str(caught.value)
    with pytest.raises(UnsupportedLayerError, match="Linear"):
        export_tflite_bytes(nn.Sequential(nn.Linear(16, 2)), (1, 3, 16, 16))


def test_an_input_shape_of_another_rank_is_refused(mlp: nn.Module) -> None:
    with pytest.raises(ExportError, match="input shape"):
        export_tflite_bytes(mlp, (1, 8, 8))
