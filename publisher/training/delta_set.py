"""A copy of a model whose chosen tensors carry trainable deltas; everything else stays frozen."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from codec.compact import Layout
from codec.payload import encode_payload
from codec.records import Record
from publisher.errors import ModelError
from publisher.training.deltas import Delta


class DeltaSet:
    """``model`` is a deep copy of the deployed model with ``deltas`` attached by parameter name."""

    def __init__(self, model: nn.Module, deltas: Mapping[str, Delta]) -> None:
        #: The model's tensors in the order of its RCW file (publisher.training.reconstruct.model_file).
        self.layout = {name: value for name, value in model.state_dict().items() if value.is_floating_point()}
        self.model = copy.deepcopy(model)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        known = dict(self.model.named_parameters())
        self.deltas = dict(deltas)
        for name, delta in self.deltas.items():
            if name not in known:
                raise ModelError(f"the model has no parameter {name!r} to attach a delta to")
            if tuple(known[name].shape) != delta.shape:
                raise ModelError(f"{name}: delta shape {delta.shape} != parameter shape {tuple(known[name].shape)}")
            module_name, _, attribute = name.rpartition(".")
            parametrize.register_parametrization(self.model.get_submodule(module_name), attribute, delta)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The deltas' parameters: the only ones an optimiser may change."""
        return [p for delta in self.deltas.values() for p in delta.parameters() if p.requires_grad]

    def set_quantised(self, quantised: bool) -> None:
        """Switch every delta to (or from) the exact device arithmetic on integer codes."""
        for delta in self.deltas.values():
            delta.quantised = quantised

    def records(self) -> list[Record]:
        """The codec records of the update, in the model's parameter order."""
        with torch.no_grad():
            return [record for name, delta in self.deltas.items() for record in delta.records(name)]

    def encode(self, layout: Layout | None = None) -> tuple[bytes, int]:
        """The compressed payload (format 2) and its decompressed length for the model file whose tensors
        are ``layout`` (codec.model_files.read_model_slots of the deployed file; default: the RCW file
        of the model)."""
        return encode_payload(self.records(), layout=self.layout if layout is None else layout)
