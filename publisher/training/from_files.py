"""`rankcast update build` on files: load the architecture, weights and data, build, write the .rcu."""

from __future__ import annotations

import hashlib
import importlib
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codec.apply import file_sha256
from codec.errors import UpdateError
from codec.update_file import UpdateFile, write_update_file
from publisher.errors import DataError, ModelError
from publisher.training.factorised import DEFAULT_FACTORS, FactorConfig
from publisher.training.reconstruct import load_file
from publisher.training.update import DEFAULT_LR, UpdateConfig, build_update


def load_architecture(spec: str) -> nn.Module:
    """Call ``MODULE:FACTORY`` (the module must be importable) and return the nn.Module it builds."""
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ModelError(f"--arch must look like MODULE:FACTORY, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"cannot load {spec}: {exc}; is the module on PYTHONPATH?") from None
    model = factory()
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_base(model: nn.Module, path: Path) -> nn.Module:
    """``model`` with the state_dict saved at ``path`` (strict: every key must match)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"{path} is not a state_dict of this architecture: {exc}") from None
    return model.eval()


def load_data(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays ``x`` (inputs, as float32) and ``y`` (integer class labels) from an .npz file."""
    try:
        with np.load(path) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise DataError(f"{path} must hold arrays named x and y, found {sorted(arrays)}")
            x, y = arrays["x"], arrays["y"]
    except (ValueError, EOFError, TypeError, AttributeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path} is not an .npz file of arrays x and y: {exc}") from None
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must hold integer class labels, got {y.dtype}")
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(y.astype(np.int64))


def build_from_files(
    *, arch: str, base: Path, train: Path, evaluate: Path, out: Path,
    rank: int | None, budget: int | None, epochs: int, lr: float | None, deployed: Path | None,
    factors: FactorConfig = DEFAULT_FACTORS,
) -> dict[str, float | int]:
    """Build the update, write ``out`` and return the summary the command prints."""
    model = load_base(load_architecture(arch), base)
    base_file = None if deployed is None else _deployed_file(model, deployed)
    config = UpdateConfig(rank=rank, budget=budget, epochs=epochs, lr=DEFAULT_LR if lr is None else lr, factors=factors)
    built = build_update(model, load_data(train), load_data(evaluate), config, base_file)
    summary = {
        "accuracy_before": built.accuracy_before, "accuracy_after": built.accuracy_after,
        "update_bytes": len(built.payload), "full_model_bytes": built.full_model_bytes,
    }
    info = {**summary, "arch": arch, "ranks": ",".join(f"{name}={r}" for name, r in built.ranks.items())}
    write_update_file(out, UpdateFile(
        payload=built.payload, decompressed_length=built.decompressed_length, payload_kind="delta",
        base_sha256=None if deployed is None else file_sha256(deployed),
        target_sha256=None if deployed is None else _sha256(built.target_file),
        info=info,
    ))
    return summary


def _deployed_file(model: nn.Module, path: Path) -> bytes:
    """The deployed RCW or .tflite file, refused unless it holds exactly BASE.pt's weights."""
    data = Path(path).read_bytes()
    try:
        deployed = load_file(model, data)
    except (UpdateError, ModelError) as exc:
        raise ModelError(f"{path} is not a model file for this architecture: {exc}") from None
    base_state, deployed_state = model.state_dict(), deployed.state_dict()
    if any(not torch.equal(base_state[name], deployed_state[name]) for name in base_state):
        raise ModelError(f"{path} does not hold the weights of --base; build against the file devices run")
    return data


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
