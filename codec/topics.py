"""MQTT topic names of the protocol (docs/format.md, "Topics"); every id is one validated topic level."""

from __future__ import annotations

from codec.manifest import validate_id

DEFAULT_PREFIX = "rankcast"


def _validate_prefix(prefix: str) -> str:
    if not prefix or any(ch in prefix for ch in "+#") or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"topic prefix {prefix!r} must be non-empty, without '+', '#' or outer '/'")
    return prefix


def manifest_topic(model: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained, QoS 1: the signed manifest of the model's latest release."""
    return f"{_validate_prefix(prefix)}/models/{validate_id(model, 'model id')}/manifest"


def chunk_topic(model: str, version: int, index: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained, QoS 1: chunk ``index`` of release ``version``."""
    return f"{release_prefix(model, version, prefix)}/chunks/{int(index)}"


def release_prefix(model: str, version: int, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{_validate_prefix(prefix)}/models/{validate_id(model, 'model id')}/releases/{int(version)}"


def status_topic(device: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained, QoS 1: the device's JSON status; its last will says offline."""
    return f"{_validate_prefix(prefix)}/devices/{validate_id(device, 'device id')}/status"
