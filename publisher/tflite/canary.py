"""The canary of a release: known inputs and the outputs the updated .tflite model gives on them.

The publisher applies the update to its own copy of the deployed file exactly as devices do (the file's
sha256 must then equal the update's target), runs that copy with the device's own TFLite wrapper
(device_client.tflite_runtime, torch-free) and signs the outputs into the manifest. A device runs the
canary on its staged file before swapping it in. The same bytes give slightly different outputs on
other CPUs and runtimes (kernels sum in other orders), more so for large outputs, so the tolerance has
a relative part; before signing, the publisher checks that the canary holds on every runtime it has.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from codec.canary import Canary
from codec.errors import BaseMismatchError, IntegrityError, UpdateError
from codec.model_files import TFLITE, model_kind
from codec.update_file import UpdateFile, updated_model_file
from publisher.errors import ReleaseInputError

#: The default tolerance, |output - expected| <= DEFAULT_ATOL + DEFAULT_RTOL × |expected|, from outputs
#: measured with both runtimes on x86-64 and aarch64 (`rankcast bench runtimes`; docs/tflite.md).
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4


def updated_file(deployed: bytes, update: UpdateFile) -> bytes:
    """The file devices running ``deployed`` have after ``update``; checks the update's base and target."""
    if update.payload_kind == "delta" and update.base_sha256 is None:
        raise ReleaseInputError("the update does not name the file it applies to: build it with --deployed FILE")
    try:
        return updated_model_file(deployed, update)
    except BaseMismatchError:
        raise ReleaseInputError("the deployed file is not the one the update was built for (its sha256 differs "
                                "from the update's base)") from None
    except IntegrityError:
        raise ReleaseInputError("applying the update to the deployed file does not give the update's target") from None
    except UpdateError as exc:
        raise ReleaseInputError(f"the update does not apply to the deployed file: {exc}") from None


def model_canary(model_file: bytes, inputs: np.ndarray, atol: float = DEFAULT_ATOL,
                 rtol: float = DEFAULT_RTOL) -> Canary:
    """The canary of a .tflite file: its outputs on ``inputs`` (a batch in the model's input layout), checked
    to hold on every TFLite runtime installed here."""
    from device_client.tflite_runtime import installed_runtimes, run

    if model_kind(model_file) != TFLITE:
        raise ReleaseInputError("a canary needs a .tflite model: devices cannot run RCW files")
    with tempfile.TemporaryDirectory(prefix="rankcast-canary-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model_file)
        try:
            outputs = {runtime: run(path, np.asarray(inputs, np.float32), runtime) for runtime in installed_runtimes()}
        except (RuntimeError, ValueError) as exc:
            raise ReleaseInputError(f"the canary inputs do not run on the model: {exc}") from None
    if not outputs:
        raise ReleaseInputError("no TFLite runtime to compute the canary with: pip install ai-edge-litert")
    signed = next(iter(outputs.values()))
    if not np.isfinite(signed).all():
        raise ReleaseInputError("the updated model gives NaN or Inf on the canary inputs; do not release it")
    try:
        canary = Canary.from_arrays(inputs, signed, atol, rtol)
    except UpdateError as exc:
        raise ReleaseInputError(f"bad canary: {exc}") from None
    for runtime, found in outputs.items():
        if not canary.holds(found):
            worst = float(np.max(np.abs(found.astype(np.float64) - signed)))
            raise ReleaseInputError(f"the canary does not hold on {runtime} here (off by up to {worst:.3g}); "
                                    "widen --canary-atol or --canary-rtol")
    return canary


def update_canary(deployed: bytes, update: UpdateFile, inputs: np.ndarray, atol: float = DEFAULT_ATOL,
                  rtol: float = DEFAULT_RTOL) -> Canary:
    """The canary of ``update`` applied to the deployed .tflite file."""
    return model_canary(updated_file(deployed, update), inputs, atol, rtol)
