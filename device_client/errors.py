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


class NotInstalledError(DeviceError):
    """The model has no installed file (register it with `rankcast device install`)."""

    code = "not-installed"


class NoPreviousError(DeviceError):
    """Rollback was asked for, but no intact previous model file is kept."""

    code = "no-previous"
