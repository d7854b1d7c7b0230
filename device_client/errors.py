"""device_client's one exception hierarchy; codes are stable and appear in the device's status.

Release checks raise the codec's errors (codec.errors: unknown-key, bad-signature, old-version, ...);
these are the device's own refusals and failures.
"""

from __future__ import annotations


class DeviceError(Exception):
    """Base of every error the device client raises itself."""

    code = "device-error"


class ConfigError(DeviceError, ValueError):
    """device.toml is missing a key, has a wrong type, or names a file that does not exist."""

    code = "bad-config"


class RolledBackError(DeviceError):
    """The release is one an operator rolled back on this device; it is not installed again."""

    code = "rolled-back"


class ReplayedError(DeviceError):
    """The retained manifest went back to an older signed one than the device followed (a freeze)."""

    code = "replayed"


class ManifestMissingError(DeviceError):
    """The retained manifest the device followed was deleted, or did not arrive after subscribing."""

    code = "manifest-missing"


class NotInstalledError(DeviceError):
    """The model has no installed file (register it with `rankcast device install`)."""

    code = "not-installed"


class NoPreviousError(DeviceError):
    """Rollback was asked for, but no intact previous model file is kept."""

    code = "no-previous"


class CanaryError(DeviceError):
    """The updated model failed the release's canary: it did not run, gave NaN/Inf, or other outputs.

    Checked on the staged file before the swap, so the failing model never runs.
    """

    code = "canary-failed"


class NoRuntimeError(DeviceError):
    """No TFLite runtime is installed (pip install tflite-runtime, or ai-edge-litert)."""

    code = "no-runtime"


class NotRunnableError(DeviceError):
    """The model file is not one the device can run (only .tflite files run; RCW files only store weights)."""

    code = "not-runnable"


class BadInputError(DeviceError, ValueError):
    """Inputs that the model cannot take: wrong shape, not a float array, or not a readable .npy file."""

    code = "bad-input"
