"""`rankcast update build` on files: load the architecture, weights and data, build, write the .rcu and,
when asked, the updated state_dict and model file the next update builds on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codec.errors import UpdateError
from codec.model_files import TFLITE, file_kind
from codec.update_file import UpdateFile, write_update_file
from publisher.errors import ConfigError, DataError, ModelError
from publisher.models.folding import fold_batchnorm
from publisher.models.imported import import_tflite
from publisher.training.factorised import DEFAULT_FACTORS, FactorConfig
from publisher.training.loop import Progress, check_data
from publisher.training.reconstruct import load_file
from publisher.training.targeted import Target, TargetedUpdate, build_targeted
from publisher.training.update import DEFAULT_LR, BuiltUpdate, UpdateConfig, build_update
from publisher.training.user_model import load_architecture, load_state

_LAYOUT = "x: float32, one example a row (N×F, or N×C×H×W for images); y: integer class labels 0..C-1"


def load_data(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays ``x`` (inputs, as float32) and ``y`` (integer class labels) from an .npz file."""
    try:
        with np.load(path) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise DataError(f"{path} must hold arrays named x and y, found {sorted(arrays)} ({_LAYOUT})")
            x, y = arrays["x"], arrays["y"]
        inputs = np.ascontiguousarray(x, np.float32)
    except (ValueError, EOFError, TypeError, AttributeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path} is not an .npz file of arrays x and y: {exc} ({_LAYOUT})") from None
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must hold integer class labels, got {y.dtype}")
    return torch.from_numpy(inputs), torch.from_numpy(y.astype(np.int64))


def check_fits(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    """Refuse data the model cannot take: inputs of another shape, labels beyond its outputs."""
    x, y = data
    try:
        check_data(x, y)
        with torch.no_grad():
            outputs = model.eval()(x[:2])
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise DataError(f"{path}: the model cannot take x of shape {list(x.shape)} ({reason}); {_LAYOUT}") from None
    if outputs.ndim != 2:
        raise DataError(f"{path}: the model gives outputs of shape {list(outputs.shape)} for x, not N×classes")
    if int(y.min()) < 0 or int(y.max()) >= outputs.shape[1]:
        raise DataError(f"{path}: labels run {int(y.min())}..{int(y.max())}, but the model has "
                        f"{outputs.shape[1]} outputs (classes 0..{outputs.shape[1] - 1})")


def build_from_files(
    *, arch: str | None, base: Path | None, train: Path, evaluate: Path, out: Path,
    rank: int | None, budget: int | None, epochs: int, lr: float | None, deployed: Path | None,
    factors: FactorConfig = DEFAULT_FACTORS, target: Target | None = None, out_weights: Path | None = None,
    out_model: Path | None = None, progress: Progress | None = None,
) -> FileBuild:
    """Build the update and write ``out``; ``out_weights`` gets the updated state_dict (the next ``base``),
    ``out_model`` the deployed file with the update applied (the next ``deployed``). Without ``arch``, the
    model is imported from the ``deployed`` .tflite file's own graph and weights (publisher.models.imported).
    Without ``rank`` and ``budget`` the update is the smallest that reaches ``target`` (default: within one
    point of a full fine-tune on a validation split of ``train``; publisher.training.targeted)."""
    _check_outputs({"--base": base, "--deployed": deployed}, {"--out": out, "--out-weights": out_weights,
                                                            "--out-model": out_model})
    if out_model is not None and deployed is None:
        raise ConfigError("--out-model writes the --deployed file with the update applied: give --deployed FILE, "
                          "the model file devices run")
    targeted = rank is None and budget is None
    if not targeted and target is not None:
        raise ConfigError("--within, --target-accuracy, --max-bytes and --no-refit choose the size: leave out --rank "
                          "and --budget")
    config = UpdateConfig(rank=rank, budget=budget, epochs=epochs, lr=DEFAULT_LR if lr is None else lr, factors=factors)
    model = _imported(deployed, base) if arch is None else fold_batchnorm(load_state(load_architecture(arch), base))
    base_file = None if deployed is None else _deployed_file(model, deployed)
    train_data, eval_data = load_data(train), load_data(evaluate)
    check_fits(model, train_data, train)
    check_fits(model, eval_data, evaluate)
    if targeted:
        search = build_targeted(model, train_data, eval_data, factors, target or Target(), epochs, lr, base_file,
                                progress)
        result = FileBuild(search.built, search)
    else:
        result = FileBuild(build_update(model, train_data, eval_data, config, base_file, progress), None)
    built = result.built
    info = {**summary(result), "arch": arch or f"imported from {Path(deployed).name}",
            "ranks": ",".join(f"{name}={r}" for name, r in built.ranks.items())}
    info.update({f"validation_{key}": value for key, value in info.pop("validation", {}).items()})
    write_update_file(out, UpdateFile(
        payload=built.payload, decompressed_length=built.decompressed_length, payload_kind="delta",
        base_sha256=None if base_file is None else _sha256(base_file),
        target_sha256=None if base_file is None else _sha256(built.target_file),
        info=info, tensors=built.tensors,
    ))
    if out_weights is not None:
        torch.save(load_file(model, built.target_file).state_dict(), out_weights)
    if out_model is not None:
        Path(out_model).write_bytes(built.target_file)
    return result


@dataclass(frozen=True)
class FileBuild:
    """The update built, and the search that chose its size when none was given."""

    built: BuiltUpdate
    search: TargetedUpdate | None


def summary(result: FileBuild) -> dict:
    """What `update build --json` prints and the .rcu's info records (flattened there)."""
    built, search = result.built, result.search
    facts: dict = {
        "accuracy_before": built.accuracy_before, "accuracy_after": built.accuracy_after,
        "update_bytes": len(built.payload), "full_model_bytes": built.full_model_bytes,
    }
    if search is not None:
        facts["validation"] = {
            "examples": search.validation_examples, "target": search.goal, "accuracy": search.chosen.accuracy,
            "bound": search.chosen.bound, "form": search.chosen.form, "trainings": len(search.attempts),
            "refit": search.refit,
            **({} if search.reference is None else {"reference": search.reference.accuracy,
                                                     "reference_lr": search.reference.lr,
                                                     "reference_eval": search.reference.eval_accuracy}),
        }
    return facts


def _check_outputs(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """Refuse an output that would overwrite an input or another output."""
    seen = {Path(path).resolve(): name for name, path in inputs.items() if path is not None}
    for name, path in outputs.items():
        if path is None:
            continue
        if Path(path).resolve() in seen:
            raise ConfigError(f"{name} {path} would overwrite {seen[Path(path).resolve()]}; give another file")
        seen[Path(path).resolve()] = name


def _imported(deployed: Path | None, base: Path | None) -> nn.Module:
    """The torch module of the deployed .tflite file (no --arch, no --base: the file holds both)."""
    if deployed is None or file_kind(deployed) != TFLITE:
        raise ConfigError("--arch MODULE:FACTORY is needed, unless --deployed is the .tflite file devices run: "
                          "then the model is imported from its graph")
    if base is not None:
        raise ConfigError("--base goes with --arch; a model imported from --deployed takes its weights from the file")
    return import_tflite(Path(deployed).read_bytes())


def _deployed_file(model: nn.Module, path: Path) -> bytes:
    """The deployed RCW or .tflite file, refused unless it holds exactly BASE.pt's weights."""
    data = Path(path).read_bytes()
    try:
        deployed = load_file(model, data)
    except (UpdateError, ModelError) as exc:
        raise ModelError(f"{path} is not a model file for this architecture: {exc}") from None
    base_state, deployed_state = model.state_dict(), deployed.state_dict()
    if any(not torch.equal(base_state[name], deployed_state[name]) for name in base_state):
        raise ModelError(f"--deployed {path} does not hold the weights of --base: give the state_dict of the file "
                         "devices run (`update build --out-weights` writes the next one)")
    return data


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
