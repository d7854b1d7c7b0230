"""The release index a manifest may carry: the recent releases a device can catch up through.

The latest manifest of a model lists the older releases still retained (and the full-model release of
the latest version, the fallback): for each its version, kind, base and target sha256, payload length
and the sha256 of its own signed manifest envelope, retained at ``releases/{version}/{kind}/manifest``.
Pinning that envelope pins everything in it (its chunk hashes too), as TUF's snapshot pins its targets
metadata, so the index stays a few hundred bytes a release however large the releases are. On the wire
(docs/format.md section 5): a list of maps ``{"base_sha256": bin | nil, "kind": str, "manifest_sha256":
bin, "payload_length": int, "target_sha256": bin, "version": int}``, keys sorted, entries sorted by
version, then kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from codec.errors import FormatError, LimitError
from codec.limits import Limits

#: At most this many entries (the manifest reader allows lists of 64 elements).
MAX_INDEX_ENTRIES = 32
KINDS = ("delta", "full")
_KEYS = {"base_sha256", "kind", "manifest_sha256", "payload_length", "target_sha256", "version"}


@dataclass(frozen=True)
class IndexEntry:
    """One retained release: what it turns (``base_sha256``; None for a full file) into what, at what cost."""

    version: int
    kind: str
    base_sha256: bytes | None
    target_sha256: bytes
    payload_length: int
    manifest_sha256: bytes

    def to_msgpack(self) -> dict:
        """The canonical map: keys sorted."""
        return {
            "base_sha256": self.base_sha256, "kind": self.kind, "manifest_sha256": self.manifest_sha256,
            "payload_length": self.payload_length, "target_sha256": self.target_sha256, "version": self.version,
        }


def index_to_msgpack(entries: tuple[IndexEntry, ...]) -> list[dict]:
    """The canonical list: entries sorted by version, then kind."""
    return [entry.to_msgpack() for entry in sorted(entries, key=lambda e: (e.version, e.kind))]


def read_index(value: object, limits: Limits) -> tuple[IndexEntry, ...]:
    """Validate an index from a manifest; raises FormatError or LimitError."""
    if not isinstance(value, list) or not value:
        raise FormatError("a release index must be a non-empty list of entries (left out when there is none)")
    if len(value) > MAX_INDEX_ENTRIES:
        raise LimitError(f"a release index of {len(value)} entries exceeds the limit of {MAX_INDEX_ENTRIES}")
    entries = tuple(_read_entry(item, limits) for item in value)
    keys = [(entry.version, entry.kind) for entry in entries]
    if keys != sorted(set(keys)):
        raise FormatError("release index entries must be sorted by version and kind, each release once")
    return entries


def _read_entry(item: object, limits: Limits) -> IndexEntry:
    if not isinstance(item, dict) or set(item) != _KEYS:
        raise FormatError(f"a release index entry must be a map of exactly {sorted(_KEYS)}")
    version, kind, length = item["version"], item["kind"], item["payload_length"]
    if type(version) is not int or not 1 <= version < 2**64:
        raise FormatError(f"a release index entry's version must be an integer of at least 1, got {version!r:.40}")
    if kind not in KINDS:
        raise FormatError(f"a release index entry's kind must be 'delta' or 'full', got {kind!r:.40}")
    if type(length) is not int or not 0 < length <= limits.max_payload_bytes:
        raise LimitError(f"a release index entry's payload_length {length!r:.40} is outside "
                         f"1..{limits.max_payload_bytes}")
    for name in ("target_sha256", "manifest_sha256"):
        _check_digest(item[name], name)
    base = item["base_sha256"]
    if (kind == "delta") != (base is not None):
        raise FormatError("a delta's index entry names its base sha256, a full release's does not (nil)")
    if base is not None:
        _check_digest(base, "base_sha256")
    return IndexEntry(version, kind, base, item["target_sha256"], length, item["manifest_sha256"])


def _check_digest(value: object, name: str) -> None:
    if type(value) is not bytes or len(value) != 32:
        raise FormatError(f"a release index entry's {name} must be 32 bytes")
