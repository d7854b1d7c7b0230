"""MQTT topic names of the protocol (docs/mqtt.md, "Topics"); every id is one validated topic level.

Also the broker address (``mqtt://`` or ``mqtts://`` URL) that publishers, devices and tools share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from codec.manifest import PAYLOAD_KINDS, validate_id

DEFAULT_PREFIX = "rankcast"
_NUMBER = re.compile(r"0|[1-9][0-9]{0,19}")


def _validate_prefix(prefix: str) -> str:
    if not prefix or any(ch in prefix for ch in "+#") or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"topic prefix {prefix!r} must be non-empty, without '+', '#' or outer '/'")
    return prefix


def manifest_topic(model: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained, QoS 1: the signed manifest of the model's latest release."""
    return f"{_validate_prefix(prefix)}/models/{validate_id(model, 'model id')}/manifest"


def chunk_topic(model: str, version: int, kind: str, index: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained, QoS 1: chunk ``index`` of release ``version``'s ``kind`` ("delta" or "full") payload."""
    return f"{release_prefix(model, version, kind, prefix)}/chunks/{int(index)}"


def release_prefix(model: str, version: int, kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The topics of one release: a version has a delta, a full release, or both (the full is the
    fallback of devices the delta's chain does not reach)."""
    if kind not in PAYLOAD_KINDS:
        raise ValueError(f"a release is a 'delta' or a 'full' release, not {kind!r}")
    return f"{_validate_prefix(prefix)}/models/{validate_id(model, 'model id')}/releases/{int(version)}/{kind}"


def release_manifest_topic(model: str, version: int, kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained, QoS 1: release ``version``'s own manifest envelope, which newer manifests' indexes pin
    (devices catch up through it) and tools list and prune by."""
    return f"{release_prefix(model, version, kind, prefix)}/manifest"


def release_manifests_filter(model: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Subscription filter matching every retained release manifest of ``model``."""
    return f"{_validate_prefix(prefix)}/models/{validate_id(model, 'model id')}/releases/+/+/manifest"


def every_manifest_filter(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Subscription filters matching every model's latest manifest and every retained release manifest."""
    models = f"{_validate_prefix(prefix)}/models/+"
    return [f"{models}/manifest", f"{models}/releases/+/+/manifest"]


def status_topic(device: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained, QoS 1: the device's JSON status (codec.status_message); its presence is beside it."""
    return f"{_validate_prefix(prefix)}/devices/{validate_id(device, 'device id')}/status"


def status_filter(prefix: str = DEFAULT_PREFIX) -> str:
    """Subscription filter matching every device's status."""
    return f"{_validate_prefix(prefix)}/devices/+/status"


def presence_topic(device: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained, QoS 1: "online" while the device is connected; its last will (and a clean shutdown) says
    "offline". Apart from the status, so the will never goes stale and a commit needs no reconnect."""
    return f"{_validate_prefix(prefix)}/devices/{validate_id(device, 'device id')}/presence"


def presence_filter(prefix: str = DEFAULT_PREFIX) -> str:
    """Subscription filter matching every device's presence."""
    return f"{_validate_prefix(prefix)}/devices/+/presence"


def presence_beside(status: str) -> str:
    """The presence topic (or filter) beside a status topic (or filter): ``…/devices/d1/status`` ->
    ``…/devices/d1/presence``."""
    return status.rsplit("/", 1)[0] + "/presence"


def root_topic(version: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained, QoS 1: version ``version`` of the trust root (codec.root); every version stays retained,
    so a device offline across several rotations walks them all."""
    return f"{_validate_prefix(prefix)}/trust/root/{int(version)}"


def root_filter(prefix: str = DEFAULT_PREFIX) -> str:
    """Subscription filter matching every retained trust root."""
    return f"{_validate_prefix(prefix)}/trust/root/+"


def parse_root_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> int | None:
    """The root version a topic carries, or None for a topic that is not a trust root's."""
    head = f"{_validate_prefix(prefix)}/trust/root/"
    level = topic[len(head):] if topic.startswith(head) else ""
    return int(level) if _canonical_number(level) and int(level) > 0 else None


@dataclass(frozen=True)
class ModelTopic:
    """What a topic under ``{prefix}/models/`` names: the model's manifest, a release's own manifest
    (``version`` and ``kind`` set) or a release's chunk (``version``, ``kind`` and ``index`` set)."""

    model: str
    version: int | None = None
    kind: str | None = None
    index: int | None = None

    @property
    def is_manifest(self) -> bool:
        return self.version is None

    @property
    def is_release_manifest(self) -> bool:
        return self.version is not None and self.index is None

    @property
    def is_chunk(self) -> bool:
        return self.index is not None


def parse_model_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> ModelTopic | None:
    """What ``topic`` names, or None for a topic that is none of the model topics."""
    head = f"{_validate_prefix(prefix)}/models/"
    if not topic.startswith(head):
        return None
    levels = topic[len(head) :].split("/")
    if len(levels) == 2 and levels[1] == "manifest":
        return ModelTopic(levels[0])
    if len(levels) < 5 or levels[1] != "releases" or not _canonical_number(levels[2]) or levels[3] not in PAYLOAD_KINDS:
        return None
    model, version, kind = levels[0], int(levels[2]), levels[3]
    if len(levels) == 5 and levels[4] == "manifest":
        return ModelTopic(model, version, kind)
    if len(levels) == 6 and levels[4] == "chunks" and _canonical_number(levels[5]):
        return ModelTopic(model, version, kind, int(levels[5]))
    return None


def _canonical_number(level: str) -> bool:
    """ASCII digits without leading zeros, so each number has one topic (not "03", not "²")."""
    return bool(_NUMBER.fullmatch(level))


@dataclass(frozen=True)
class BrokerUrl:
    """Where the broker listens: ``mqtts://host:8883`` (TLS) or ``mqtt://host:1883``."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"broker URL {url!r} must look like mqtts://HOST:PORT or mqtt://HOST:PORT")
        if parts.username or parts.password:
            raise ValueError("put credentials in a username and a password file, not in the broker URL")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def read_password_file(path: Path | None) -> str | None:
    """A broker password kept in a file (never on the command line): its first line; None without a file."""
    if path is None:
        return None
    lines = Path(path).read_text().splitlines()
    return lines[0] if lines else ""
