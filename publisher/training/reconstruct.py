"""The device's view of a model: a model file (RCW or .tflite), a payload applied to it, the model loaded back.

Every accuracy the publisher reports comes from ``updated_model``: the base state written as an RCW
file, the payload applied by codec.apply exactly as a device applies it (in memory), the tensors loaded back.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from codec.apply import apply_to_bytes
from codec.errors import UpdateError
from codec.model_files import read_model_slots
from codec.weights import encode_weights
from publisher.errors import ModelError


def model_file(state: Mapping[str, torch.Tensor]) -> bytes:
    """An RCW file of the floating-point tensors of a state_dict, under their PyTorch names."""
    return encode_weights(
        {name: value.detach().cpu().float().numpy() for name, value in state.items() if value.is_floating_point()}
    )


def load_file(model: nn.Module, file: bytes) -> nn.Module:
    """A copy of ``model`` holding the tensors of an RCW or .tflite file (every float tensor must be there)."""
    loaded = copy.deepcopy(model)
    state = loaded.state_dict()
    try:
        slots = read_model_slots(memoryview(file))
    except UpdateError as exc:
        raise ModelError(f"not a model file rankcast can read: {exc}") from None
    missing = [name for name, value in state.items() if value.is_floating_point() and name not in slots]
    if missing:
        raise ModelError(f"the model file lacks tensors {missing[:3]}...; was it written for another architecture?")
    with torch.no_grad():
        for name, slot in slots.items():
            if name not in state or tuple(state[name].shape) != slot.shape:
                raise ModelError(f"model file tensor {name!r} {slot.shape} does not fit the architecture")
            state[name].copy_(torch.from_numpy(slot.view(file).copy()))
    loaded.eval()
    return loaded


def updated_model(model: nn.Module, base_file: bytes, payload: bytes, decompressed_length: int) -> nn.Module:
    """``model`` with exactly the weights a device has after applying the payload to ``base_file``."""
    return load_file(model, apply_to_bytes(base_file, payload, decompressed_length)[0])
