"""Where a link's bytes went: every MQTT packet each way on each connection, sorted into categories.

A ``WireTally`` per device is a LinkProxy ``wire_tap``: each connection gets a parser per direction, fed
the bytes the proxy counts, at the moment it counts them, so the categories of a direction always add
up to the proxy's ``bytes_up`` / ``bytes_down`` (application bytes: TCP/IP headers are not counted).
Packets are split by MQTT's remaining length (OASIS MQTT 5.0 §2.1.4); a PUBLISH's framing is its fixed
header, topic, packet id (QoS > 0) and properties (§3.3.2, MQTT 5 only: the protocol level comes from
the connection's CONNECT), the rest its payload. Only a packet's head is buffered, so a big chunk costs
no copy; until a head is complete its bytes count as ``other``.

The categories (each direction has them all):

- ``setup``: CONNECT, CONNACK, DISCONNECT, AUTH; SUBSCRIBE/UNSUBSCRIBE and their acks for standing
  topics (the manifest topic, the trust roots); the retained trust roots and their acks; the presence
  ("online") a device publishes on connecting, and its ack.
- ``keepalive``: PINGREQ, PINGRESP.
- ``manifest_*``, ``chunk_*``, ``status_*``: PUBLISH on a manifest topic (the model's latest or a
  release's own), a chunk topic, a device status topic; ``_payload`` the message, ``_framing`` the rest
  of the PUBLISH and the PUBACK/PUBREC/PUBREL/PUBCOMP that acknowledge it (matched by packet id).
- ``subscriptions``: SUBSCRIBE/UNSUBSCRIBE naming a release's topics (chunks, release manifests), and
  their SUBACK/UNSUBACK: what following a download costs, not the connection.
- ``acks``: acknowledgements of a packet id this connection did not see sent.
- ``other``: anything else (a PUBLISH on another topic, a reserved type, bytes after a malformed packet).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, fields

from codec.topics import DEFAULT_PREFIX, parse_model_topic, parse_root_topic

CATEGORIES = ("setup", "keepalive", "manifest_payload", "manifest_framing", "chunk_payload", "chunk_framing",
              "status_payload", "status_framing", "subscriptions", "acks", "other")

_CONNECT, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 1, 3, 4, 5, 6, 7
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK, _PINGREQ, _PINGRESP = 8, 9, 10, 11, 12, 13
_SETUP_TYPES = {_CONNECT, 2, 14, 15}  # CONNECT, CONNACK, DISCONNECT, AUTH
_ACKS = {_PUBACK, _PUBREC, _PUBREL, _PUBCOMP, _SUBACK, _UNSUBACK}
_FINAL_ACKS = {_PUBACK, _PUBCOMP, _SUBACK, _UNSUBACK}  # the packet id is free again after these
_FLOWS = ("manifest", "chunk", "status")  # the PUBLISH flows split into payload and framing


@dataclass(frozen=True)
class Split:
    """Bytes of one direction per category (``CATEGORIES``)."""

    setup: int = 0
    keepalive: int = 0
    manifest_payload: int = 0
    manifest_framing: int = 0
    chunk_payload: int = 0
    chunk_framing: int = 0
    status_payload: int = 0
    status_framing: int = 0
    subscriptions: int = 0
    acks: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())

    @property
    def beyond_setup(self) -> int:
        """Every byte but the connection's set-up and keepalives."""
        return self.total - self.setup - self.keepalive

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def since(self, earlier: Split) -> Split:
        return Split(**{key: value - getattr(earlier, key) for key, value in self.as_dict().items()})


@dataclass(frozen=True)
class WireBytes:
    """What one device's link carried each way, by category."""

    down: Split = Split()
    up: Split = Split()

    def since(self, earlier: WireBytes) -> WireBytes:
        return WireBytes(self.down.since(earlier.down), self.up.since(earlier.up))


Feed = Callable[[bytes], None]


class WireTally:
    """One device's bytes by category over all its connections; thread-safe to read while links run."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._counts = {"down": dict.fromkeys(CATEGORIES, 0), "up": dict.fromkeys(CATEGORIES, 0)}
        self._lock = threading.Lock()

    def connection(self) -> tuple[Feed, Feed]:
        """The (up, down) feeds of a new connection (a LinkProxy wire_tap)."""
        connection = _Connection(self)
        return _Stream(connection, "up").feed, _Stream(connection, "down").feed

    def snapshot(self) -> WireBytes:
        with self._lock:
            return WireBytes(Split(**self._counts["down"]), Split(**self._counts["up"]))

    def add(self, direction: str, category: str, size: int) -> None:
        with self._lock:
            self._counts[direction][category] += size


class _Connection:
    """What both directions of one connection share: the protocol level, the open packet ids' flows."""

    def __init__(self, tally: WireTally) -> None:
        self.tally = tally
        self.level = 5
        self.flows: dict[tuple[str, int], str] = {}  # (direction it was sent, packet id) -> flow

    def publish_flow(self, topic: str) -> str:
        named = parse_model_topic(topic, self.tally.prefix)
        if named is not None:
            return "chunk" if named.is_chunk else "manifest"
        if parse_root_topic(topic, self.tally.prefix) is not None:
            return "setup"
        head = f"{self.tally.prefix}/devices/"
        own = topic.startswith(head) and topic.count("/") == head.count("/") + 1
        if own and topic.endswith("/status"):
            return "status"
        return "setup" if own and topic.endswith("/presence") else "other"

    def filter_flow(self, filters: list[str]) -> str:
        head = f"{self.tally.prefix}/models/"
        releases = any(f.startswith(head) and "/releases/" in f[len(head):] for f in filters)
        return "subscriptions" if releases else "setup"


class _Malformed(Exception):
    pass


class _Stream:
    """One direction of one connection: packet heads are parsed, bodies only counted."""

    def __init__(self, connection: _Connection, direction: str) -> None:
        self.connection, self.direction = connection, direction
        self.other = "down" if direction == "up" else "up"
        self.pending = b""  # an incomplete head, counted as other meanwhile
        self.body_left, self.body_category = 0, "other"
        self.broken = False

    def feed(self, data: bytes) -> None:
        add = self.connection.tally.add
        if self.pending:
            add(self.direction, "other", -len(self.pending))
            data, self.pending = self.pending + data, b""
        position = 0
        while position < len(data):
            if self.body_left or self.broken:
                take = len(data) - position if self.broken else min(self.body_left, len(data) - position)
                add(self.direction, self.body_category, take)
                self.body_left -= 0 if self.broken else take
                position += take
                continue
            try:
                parsed = _parse_head(data, position, self.connection.level)
                if parsed is None:
                    self.pending = data[position:]
                    add(self.direction, "other", len(self.pending))
                    return
                head, total = parsed
                head_category, self.body_category = self._classify(data[position:position + head])
            except _Malformed:
                self.broken, self.body_category = True, "other"
                continue
            add(self.direction, head_category, head)
            position += head
            self.body_left = total - head

    def _classify(self, head: bytes) -> tuple[str, str]:
        """The categories of a packet's head and of the rest of it."""
        kind, start = head[0] >> 4, 1 + _varint(head, 1)[1]
        if kind == _PUBLISH:
            size = int.from_bytes(head[start:start + 2], "big")
            flow = self.connection.publish_flow(head[start + 2:start + 2 + size].decode("utf-8", "replace"))
            if (head[0] >> 1) & 3:
                self.connection.flows[(self.direction, _packet_id(head, start + 2 + size))] = flow
            return (f"{flow}_framing", f"{flow}_payload") if flow in _FLOWS else (flow, flow)
        if kind in (_SUBSCRIBE, _UNSUBSCRIBE):
            flow = self.connection.filter_flow(_filters(head, start, kind, self.connection.level))
            self.connection.flows[(self.direction, _packet_id(head, start))] = flow
            return flow, flow
        if kind in _ACKS:
            sender = self.direction if kind == _PUBREL else self.other
            key = (sender, _packet_id(head, start))
            flow = self.connection.flows.pop(key, None) if kind in _FINAL_ACKS else self.connection.flows.get(key)
            category = "acks" if flow is None else f"{flow}_framing" if flow in _FLOWS else flow
            return category, category
        if kind == _CONNECT:
            if len(head) > start + 6 and head[start + 2:start + 6] == b"MQTT":
                self.connection.level = head[start + 6]
            return "setup", "setup"
        if kind in _SETUP_TYPES:
            return "setup", "setup"
        if kind in (_PINGREQ, _PINGRESP):
            return "keepalive", "keepalive"
        return "other", "other"


def _varint(data: bytes, position: int) -> tuple[int, int] | None:
    """A variable byte integer (MQTT 5.0 §1.5.5) at ``position``: (value, bytes used), None if incomplete."""
    value = 0
    for used in range(4):
        if position + used >= len(data):
            return None
        byte = data[position + used]
        value |= (byte & 0x7F) << (7 * used)
        if not byte & 0x80:
            return value, used + 1
    raise _Malformed("a variable byte integer longer than four bytes")


def _parse_head(data: bytes, position: int, level: int) -> tuple[int, int] | None:
    """(head size, packet size) of the packet at ``position``; None until enough of it is there. The head
    is what classifying the packet needs: up to a PUBLISH's properties, a whole (UN)SUBSCRIBE, an ack's id."""
    remaining = _varint(data, position + 1)
    if remaining is None:
        return None
    fixed, total = 1 + remaining[1], 1 + remaining[1] + remaining[0]
    kind, start = data[position] >> 4, position + fixed
    if kind == _PUBLISH:
        if len(data) < start + 2:
            return None
        head = fixed + 2 + int.from_bytes(data[start:start + 2], "big") + (2 if (data[position] >> 1) & 3 else 0)
        if level >= 5:
            properties = _varint(data, position + head) if head < total else None
            if properties is None:
                return None if head < total else _malformed()
            head += properties[1] + properties[0]
    elif kind in (_SUBSCRIBE, _UNSUBSCRIBE):
        head = total
    elif kind in _ACKS:
        head = min(total, fixed + 2)
    elif kind == _CONNECT:
        head = min(total, fixed + 7)
    else:
        head = fixed
    if head > total:
        _malformed()
    return (head, total) if len(data) >= position + head else None


def _malformed() -> None:
    raise _Malformed("a packet's head runs past its remaining length")


def _packet_id(head: bytes, position: int) -> int:
    return int.from_bytes(head[position:position + 2], "big")


def _filters(packet: bytes, start: int, kind: int, level: int) -> list[str]:
    """The topic filters of a whole SUBSCRIBE or UNSUBSCRIBE whose variable header starts at ``start``."""
    position = start + 2
    if level >= 5:
        length, used = _varint(packet, position) or (0, 0)
        position += used + length
    filters = []
    while position + 2 <= len(packet):
        size = int.from_bytes(packet[position:position + 2], "big")
        filters.append(packet[position + 2:position + 2 + size].decode("utf-8", "replace"))
        position += 2 + size + (1 if kind == _SUBSCRIBE else 0)
    return filters
