"""Running a float32 .tflite model on a device, and the canary check after an update. Never imports torch.

The interpreter comes from tflite_runtime when it is installed (the small device wheel), else from
ai_edge_litert (LiteRT, the server's and newer devices' package). Inputs are given in the layout the
model was exported with (PyTorch's: N×F or NCHW); the first axis is the batch, of any size.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: The runtimes rankcast runs .tflite files with, in the order a device prefers them.
RUNTIMES = ("tflite_runtime", "ai_edge_litert")
#: File descriptor 2 is the process's: one redirection at a time.
_STDERR_LOCK = threading.Lock()


def preferred_runtime() -> str | None:
    """The runtime interpreter_class picks by default, as "distribution version" (from its installed
    metadata, without importing it), or None if none is installed."""
    for name in RUNTIMES:
        distribution = name.replace("_", "-")
        try:
            return f"{distribution} {importlib.metadata.version(distribution)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def installed_runtimes() -> tuple[str, ...]:
    """The runtimes of RUNTIMES that import here."""
    found = []
    for name in RUNTIMES:
        try:
            importlib.import_module(f"{name}.interpreter")
        except ImportError:
            continue
        found.append(name)
    return tuple(found)


def interpreter_class(runtime: str | None = None) -> type:
    """The TFLite Interpreter class of ``runtime`` (default: the first installed of RUNTIMES); raises
    ImportError if there is none."""
    for name in (runtime,) if runtime else RUNTIMES:
        try:
            return importlib.import_module(f"{name}.interpreter").Interpreter
        except ImportError:
            continue
    wanted = f"TFLite runtime {runtime}" if runtime else "TFLite runtime"
    raise ImportError(f"no {wanted}: pip install tflite-runtime (or ai-edge-litert)")


class TFLiteModel:
    """One loaded .tflite model with a single input and output; load it again after the file changes."""

    def __init__(self, model_path: Path, *, num_threads: int = 1, runtime: str | None = None) -> None:
        self._path = str(model_path)
        self._num_threads = num_threads
        self._runtime = runtime
        self._interpreter = self._load()
        if len(self._interpreter.get_input_details()) != 1 or len(self._interpreter.get_output_details()) != 1:
            raise ValueError(f"{model_path}: only models with one input and one output are supported")
        self._input = self._interpreter.get_input_details()[0]
        self._batch: int | None = None  # the batch size the interpreter is allocated for
        self._resizable = True

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input shape stored in the file (its first axis is the batch the file was made for)."""
        return tuple(int(d) for d in self._input["shape"])

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """The float32 outputs for a batch of inputs."""
        batch = np.ascontiguousarray(inputs, np.float32)
        if batch.ndim != len(self.input_shape) or batch.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"inputs of shape {batch.shape} do not fit the model's input {self.input_shape}")
        if batch.shape[0] != self._batch and not (self._resizable and self._resize(batch.shape[0])):
            if self.input_shape[0] != 1:
                raise ValueError(f"{self._path} takes batches of exactly {self.input_shape[0]}")
            return np.concatenate([self._invoke(batch[i : i + 1]) for i in range(batch.shape[0])])
        return self._invoke(batch)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input["index"], batch)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._interpreter.get_output_details()[0]["index"]))

    def _resize(self, rows: int) -> bool:
        """Allocate for ``rows`` inputs; on a graph with a fixed batch, reload it and return False."""
        try:
            self._interpreter.resize_tensor_input(self._input["index"], [rows, *self.input_shape[1:]])
            with native_info_kept_quiet():
                self._interpreter.allocate_tensors()
            self._batch = rows
            return True
        except (RuntimeError, ValueError):
            self._interpreter = self._load()
            with native_info_kept_quiet():
                self._interpreter.allocate_tensors()
            self._batch, self._resizable = self.input_shape[0], False
            return False

    def _load(self) -> object:
        return interpreter_class(self._runtime)(model_path=self._path, num_threads=self._num_threads)


@contextlib.contextmanager
def native_info_kept_quiet() -> Iterator[None]:
    """Keep the runtime's native INFO lines (``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``,
    written by C++ straight to file descriptor 2 when tensors are allocated) out of the output; every
    other line it writes (warnings, errors) is passed on to stderr afterwards."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to keep quiet
            yield
            return
        try:
            os.dup2(captured.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not line.startswith("INFO: ")]
            sys.stderr.write("".join(kept))


def run(model_path: Path, inputs: np.ndarray, runtime: str | None = None) -> np.ndarray:
    """The model's float32 outputs for a batch of inputs (loads the model for this one call)."""
    return TFLiteModel(model_path, runtime=runtime).predict(inputs)
