"""A user's PyTorch model as the command line names it: ``--arch MODULE:FACTORY`` (importable from the
current directory) and a state_dict file (``--base``, ``--weights``) checked against it."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import pickle
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from codec.model_files import SUFFIXES, file_kind
from publisher.errors import ModelError
from publisher.models.folding import fold_batchnorm

#: What else torch.load raises for a file that is not a PyTorch save (its messages can span many lines).
_LOAD_ERRORS = (RuntimeError, ValueError, TypeError, AttributeError, KeyError, IndexError, EOFError)
_SAVE_HINT = "save it with torch.save(model.state_dict(), PATH)"


def load_architecture(spec: str) -> nn.Module:
    """Call ``MODULE:FACTORY`` (a function of no arguments) and return the nn.Module it builds; MODULE is
    looked for in the current directory, then on PYTHONPATH."""
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ModelError(f"--arch must look like MODULE:FACTORY, got {spec!r}; for example mymodels:build for "
                         "build() in ./mymodels.py")
    with _current_directory_importable():
        factory = getattr(_import(module_name), factory_name, None)
        if not callable(factory):
            raise ModelError(f"{module_name} has no function {factory_name!r}; --arch names the function that "
                             "builds the model, for example mymodels:build")
        if not _takes_no_arguments(factory):
            raise ModelError(f"{spec} must build the model with no arguments; wrap it in a function that does")
        model = factory()
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_state(model: nn.Module, path: Path, option: str = "--base") -> nn.Module:
    """``model`` holding the state_dict saved at ``path`` (every key and shape must match), in eval mode; a
    state_dict of the model with batch norm folded (what `update build --out-weights` writes) loads into
    the folded model."""
    kind = file_kind(path)
    if kind is not None:
        elsewhere = ", and the model file goes to --deployed" if option == "--base" else ""
        raise ModelError(f"{option} {path} is a {SUFFIXES[kind]} model file; {option} takes a PyTorch state_dict "
                         f"({_SAVE_HINT}){elsewhere}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(f"{option} {path} is not a state_dict of tensors torch.load opens safely (a whole model "
                         f"saved with torch.save(model), or no PyTorch file); {_SAVE_HINT}") from None
    except _LOAD_ERRORS as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelError(f"{option} {path} is not a PyTorch file ({reason}); {_SAVE_HINT}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        nested = [key for key, value in state.items() if isinstance(value, Mapping)] if isinstance(state, dict) else []
        hint = f"if it is a checkpoint, torch.save(checkpoint[{nested[0]!r}], PATH)" if nested else _SAVE_HINT
        raise ModelError(f"{option} {path} holds a {type(state).__name__}, not a state_dict of tensors; {hint}")
    mismatch = _mismatch(model.state_dict(), state)
    if mismatch and _has_batchnorm(model):  # weights written after folding (update build --out-weights)
        folded = fold_batchnorm(model)
        if not _mismatch(folded.state_dict(), state):
            model, mismatch = folded, ""
    if mismatch:
        raise ModelError(f"{option} {path} is not a state_dict of this architecture: {mismatch}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


def _mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str:
    """What keeps ``found`` from loading into a model whose state_dict is ``expected``, in one line."""
    parts = []
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    shapes = [f"{name} {list(found[name].shape)} (the model's is {list(value.shape)})"
              for name, value in expected.items() if name in found and found[name].shape != value.shape]
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if names:
            parts.append(f"{label} {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}")
    return "; ".join(parts)


def _takes_no_arguments(function: object) -> bool:
    try:
        inspect.signature(function).bind()
    except TypeError:
        return False
    except ValueError:  # no signature to read: calling it will tell
        return True
    return True


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name != exc.name and not name.startswith(f"{exc.name}."):
            raise ModelError(f"{name} imports {exc.name}, which is not installed here") from None
        raise ModelError(f"no module {name} in the current directory ({os.getcwd()}) or on PYTHONPATH; run "
                         f"rankcast in the folder that holds {name.replace('.', '/')}.py, or add that folder "
                         "to PYTHONPATH") from None
    except ImportError as exc:
        raise ModelError(f"importing {name} failed: {exc}") from None


@contextlib.contextmanager
def _current_directory_importable() -> Iterator[None]:
    """The current directory first on sys.path while the user's module is imported and its factory runs."""
    here = os.getcwd()
    sys.path.insert(0, here)
    try:
        yield
    finally:
        sys.path.remove(here)
