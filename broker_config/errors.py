"""broker_config's one exception hierarchy; each error has a stable ``code`` for `rankcast`'s error line."""

from __future__ import annotations


class BrokerSetupError(Exception):
    """Base of every error while preparing or starting the broker."""

    code = "broker-setup"


class ToolError(BrokerSetupError):
    """mosquitto, mosquitto_passwd or openssl is missing or failed."""

    code = "tool-failed"


class NotPreparedError(BrokerSetupError):
    """The data directory lacks a file the broker needs (certificates, password file)."""

    code = "not-prepared"
