"""When a download has stopped making progress: its deadline, the re-subscriptions, and the stall.

A download without progress for its deadline D re-subscribes to its topics (the broker sends their
retained messages again) at D, 3D, 7D, ... (doubling gaps, at most 16D apart) and is stalled from the
second re-subscription on; anything that arrives ends the stall. D is ``least`` seconds, or ten times the mean
gap between arrivals so far if that is longer (a slow link).
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Re-subscriptions without progress after which a download is stalled.
STALLED_AFTER_RETRIES = 2
#: Chunk times in a deadline: it is at least this many times the mean gap between arrivals.
STALL_CHUNK_TIMES = 10
#: The gap between re-subscriptions doubles at most this often: 16 deadlines apart at most.
MAX_DOUBLINGS = 4


class StallWatch:
    """The progress of one download, against the clock ``monotonic`` (seconds; tests drive their own)."""

    def __init__(self, least: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.least, self.monotonic = least, monotonic
        self.stalled = False
        self.progress_at = self._first_at = self._retry_at = 0.0
        self._arrivals = self._retries = 0

    def restart(self) -> None:
        """A new download: forget the gaps of the last one, and count its start as progress."""
        self._arrivals = 0
        self.progressed()

    def progressed(self) -> None:
        """Something arrived: the stall (if any) is over and the deadline starts again."""
        now = self.monotonic()
        if self._arrivals == 0:
            self._first_at = now
        self._arrivals += 1
        self.progress_at = now
        self._retries, self.stalled = 0, False
        self._retry_at = now + self.deadline()

    def deadline(self) -> float:
        """Seconds without progress before the first re-subscription."""
        gaps = self._arrivals - 1
        mean = (self.progress_at - self._first_at) / gaps if gaps > 0 else 0.0
        return max(self.least, STALL_CHUNK_TIMES * mean)

    def due(self, now: float | None = None) -> bool:
        """Whether to re-subscribe now; the call that says so schedules the next one (and may stall)."""
        now = self.monotonic() if now is None else now
        if now < self._retry_at:
            return False
        self._retries += 1
        self._retry_at = now + self.deadline() * 2 ** min(self._retries, MAX_DOUBLINGS)
        self.stalled = self.stalled or self._retries >= STALLED_AFTER_RETRIES
        return True


class Refetch:
    """Topics to subscribe to again after a bad message on them: 1 s, then doubling up to a minute."""

    FIRST_S, MOST_S = 1.0, 60.0

    def __init__(self) -> None:
        self._pending: dict[str, tuple[float, float]] = {}  # topic -> (when, the gap after that)

    def schedule(self, topic: str, now: float) -> None:
        gap = self._pending.get(topic, (0.0, self.FIRST_S))[1]
        self._pending[topic] = (now + gap, min(2 * gap, self.MOST_S))

    def forget(self, topic: str) -> None:
        self._pending.pop(topic, None)

    def due(self, now: float) -> set[str]:
        """The topics whose time has come (each stays scheduled until ``forget`` or a new ``schedule``)."""
        ready = {topic for topic, (when, _) in self._pending.items() if when <= now}
        for topic in ready:
            when, gap = self._pending[topic]
            self._pending[topic] = (float("inf"), gap)  # once, until the next bad message reschedules it
        return ready
