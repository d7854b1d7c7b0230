"""The broker as the dashboard sees it: the latest message of every device status and presence and of every
manifest topic,
kept current by one live subscription, and connected again with backoff when the connection drops.

The first connection is made by ``start`` in the caller's thread, so wrong credentials or a wrong port are a
coded error at once; later drops only mark the feed disconnected (the page says so) while it retries. After
a reconnect the broker sends the retained messages again, so the feed starts from them afresh: a topic
cleared meanwhile does not linger.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from codec.topics import every_manifest_filter, presence_filter, status_filter
from publisher.errors import PublishError
from publisher.release.session import BrokerLogin, BrokerSession

#: A status longer than this is kept as a marker, not whole (a device cannot make the dashboard hold megabytes).
MAX_STATUS_BYTES = 16 * 1024
#: What an oversized status is kept as: JSON that parse_status reads as state "invalid".
OVERSIZED = b'{"oversized": true}'
_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class FeedSnapshot:
    """What the feed holds at one moment: topic -> payload, and the connection's state."""

    statuses: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    presence: dict[str, bytes] = field(default_factory=dict)
    connected: bool = False
    #: Why the connection dropped (or the last reconnect failed), while it is down.
    problem: str | None = None
    #: When the current connection was made, or the last one dropped (Unix time).
    since: float | None = None


class FleetFeed:
    """Follows ``prefix``'s statuses and manifests as ``login`` (a collector account is enough)."""

    def __init__(self, login: BrokerLogin, prefix: str, timeout: float = 30.0) -> None:
        self.login, self.prefix, self.timeout = login, prefix, timeout
        self._lock = threading.Lock()
        self._state = FeedSnapshot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect and subscribe (raises the session's PublishError subclasses), then follow in a thread."""
        session = self._open()
        self._thread = threading.Thread(target=self._keep, args=(session,), name="dashboard-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout)

    def snapshot(self) -> FeedSnapshot:
        """A copy of the topics and the connection state, safe to read while messages arrive."""
        with self._lock:
            state = self._state
            return FeedSnapshot(dict(state.statuses), dict(state.manifests), dict(state.presence), state.connected,
                                state.problem, state.since)

    def _open(self) -> BrokerSession:
        session = BrokerSession(self.login, timeout=self.timeout)
        session.connect()
        with self._lock:
            self._state = FeedSnapshot(connected=True, since=time.time())
        try:
            session.follow([status_filter(self.prefix), presence_filter(self.prefix),
                            *every_manifest_filter(self.prefix)], self._receive)
        except PublishError:
            session.close()
            raise
        return session

    def _receive(self, topic: str, payload: bytes) -> None:
        status = topic.endswith("/status")
        if (status or topic.endswith("/presence")) and len(payload) > MAX_STATUS_BYTES:
            payload = OVERSIZED
        with self._lock:
            state = self._state
            kept = state.statuses if status else state.presence if topic.endswith("/presence") else state.manifests
            if payload:
                kept[topic] = payload
            else:
                kept.pop(topic, None)

    def _keep(self, session: BrokerSession) -> None:
        """Until stopped: wait for the connection to drop, then connect again with backoff."""
        failures = 0
        while not self._stop.is_set():
            if session is not None and not session.wait_lost(0.5):
                continue
            if session is not None:
                self._lose(session.lost)
                session.close()
                session = None
            if self._stop.wait(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]):
                break
            try:
                session, failures = self._open(), 0
            except PublishError as exc:
                failures += 1
                self._lose(f"[{exc.code}] {exc}")
        if session is not None:
            session.close()

    def _lose(self, why: str | None) -> None:
        with self._lock:
            self._state.connected, self._state.problem, self._state.since = False, why, time.time()
