"""Running a device's current model, and the canary check of an updated model file before it is swapped in.

``Predictor`` keeps one TFLite interpreter for the running file of one model and loads it again when the
store's file changes (a commit, a rollback by another process). ``check_canary`` runs a manifest's
canary on a staged file and raises CanaryError if the file does not run or its outputs are not finite
or not within the canary's tolerance (``atol + rtol × |expected|``). Only .tflite files run; RCW files
only store weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from codec.canary import Canary
from codec.model_files import TFLITE, file_kind
from device_client.errors import BadInputError, CanaryError, NoRuntimeError, NotInstalledError, NotRunnableError
from device_client.store import Installed, ModelStore
from device_client.tflite_runtime import TFLiteModel

log = logging.getLogger("rankcast.device")


def load_model(path: Path, num_threads: int = 1) -> TFLiteModel:
    """The interpreter for a .tflite file; NotRunnableError for other files, NoRuntimeError without a runtime."""
    kind = file_kind(path)
    if kind != TFLITE:
        raise NotRunnableError(f"{path} is {'an RCW' if kind else 'not a'} model file; only .tflite models run")
    try:
        return TFLiteModel(path, num_threads=num_threads)
    except ImportError as exc:
        raise NoRuntimeError(str(exc)) from None


class Predictor:
    """The running model of ``model`` in ``store``, ready to predict."""

    def __init__(self, store: ModelStore, model: str, num_threads: int = 1) -> None:
        self.store, self.model, self.num_threads = store, model, num_threads
        self.loaded: Installed | None = None
        self._interpreter: TFLiteModel | None = None

    def reload(self) -> Installed:
        """Load the store's current file (after a commit or rollback); returns what now runs."""
        installed = self.store.current(self.model)
        if installed is None:
            raise NotInstalledError(f"model {self.model!r} is not installed on this device")
        self._interpreter = load_model(installed.path, self.num_threads)
        self.loaded = installed
        log.info("%s: loaded version %d (sha256 %s)", self.model, installed.version, installed.sha256.hex()[:16])
        return installed

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Float32 outputs for a batch; one example without the batch axis is taken as a batch of one."""
        current = self.store.current(self.model)
        if self._interpreter is None or current is None or self.loaded is None or current.sha256 != self.loaded.sha256:
            self.reload()
        batch = np.asarray(inputs)
        if not np.issubdtype(batch.dtype, np.number) or np.issubdtype(batch.dtype, np.complexfloating):
            raise BadInputError(f"inputs must be a real numeric array, not {batch.dtype}")
        expected = self._interpreter.input_shape
        if batch.shape == expected[1:]:
            batch = batch[None]
        if batch.ndim != len(expected) or batch.shape[1:] != expected[1:]:
            raise BadInputError(
                f"inputs of shape {list(batch.shape)} do not fit model {self.model!r}, which takes "
                f"[batch, {', '.join(map(str, expected[1:]))}] (one example may leave out the batch axis)"
            )
        return self._interpreter.predict(batch)


def check_canary(path: Path, canary: Canary) -> None:
    """Run ``canary`` on the model file at ``path``; raises CanaryError unless every output is finite and close."""
    expected = canary.output_array()
    try:
        outputs = load_model(path).predict(canary.input_array())
    except Exception as exc:  # noqa: BLE001 - whatever stops the model from running fails the canary
        raise CanaryError(f"the updated model cannot run the canary: {exc}") from None
    if outputs.shape != expected.shape:
        raise CanaryError(f"the updated model gives outputs of shape {list(outputs.shape)}, the canary "
                          f"expects {list(expected.shape)}; the running model is kept")
    if not np.isfinite(outputs).all():
        raise CanaryError("the updated model gives NaN or Inf on the canary inputs; the running model is kept")
    if not canary.holds(outputs):
        worst = float(np.max(np.abs(outputs.astype(np.float64) - expected)))
        raise CanaryError(f"the updated model's canary outputs differ by up to {worst:.3g}, beyond atol "
                          f"{canary.atol:g} + rtol {canary.rtol:g} x |expected|; the running model is kept")
