"""Counting what a link carried, by MQTT topic: the PUBLISH packets in a plain MQTT byte stream.

A LinkProxy tap (``counter.stream``) per connection splits the stream into packets by MQTT's
remaining-length prefix (OASIS MQTT 3.1.1 §2.2.3, the same in 5.0) and counts, per topic, the PUBLISH
packets (type 3) it saw: a chunk delivered twice shows as a count of 2 on its topic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_PUBLISH = 3


class PublishCounter:
    """PUBLISH packets per topic over every stream fed to it; thread-safe to read while links run."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def stream(self) -> Callable[[bytes], None]:
        """A feed function for one connection's bytes, in order (a LinkProxy down_tap)."""
        return _PacketSplitter(self._count).feed

    def count(self, topic: str) -> int:
        with self._lock:
            return self._counts.get(topic, 0)

    def topics(self) -> dict[str, int]:
        """Every topic seen, with its count."""
        with self._lock:
            return dict(self._counts)

    def _count(self, topic: str) -> None:
        with self._lock:
            self._counts[topic] = self._counts.get(topic, 0) + 1


class _PacketSplitter:
    """Splits a byte stream into MQTT packets and reports the topic of every PUBLISH."""

    def __init__(self, on_publish: Callable[[str], None]) -> None:
        self.on_publish = on_publish
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while (end := self._packet_end()) is not None:
            if self.buffer[0] >> 4 == _PUBLISH:
                self.on_publish(self._topic())
            del self.buffer[:end]

    def _packet_end(self) -> int | None:
        """Where the first packet in the buffer ends, or None while it is incomplete."""
        length = 0
        for used in range(1, 5):
            if used >= len(self.buffer):
                return None
            byte = self.buffer[used]
            length |= (byte & 0x7F) << (7 * (used - 1))
            if not byte & 0x80:
                end = 1 + used + length
                return end if end <= len(self.buffer) else None
        return None

    def _topic(self) -> str:
        """The topic of the PUBLISH at the start of the buffer: a two-byte length, then UTF-8."""
        start = 1 + next(i for i in range(1, 5) if not self.buffer[i] & 0x80)
        size = int.from_bytes(self.buffer[start:start + 2], "big")
        return bytes(self.buffer[start + 2:start + 2 + size]).decode("utf-8", "replace")
