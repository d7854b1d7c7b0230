"""How far the fleet's event loop falls behind, and link time without it.

Link time is wall time multiplied by the time scale. When the one event loop serving the whole fleet
is busy (devices verifying and applying in a burst, too many devices, another process taking the CPU),
nothing on any link moves, yet the wall clock goes on: that time would show up as link time no link
caused. ``LoopLag`` sleeps a short wall ``period`` again and again and adds up how much later than
asked it woke: the loop's scheduling lag. The link clock (simulator.fleet.link_proxy.LinkClock) leaves
that lag out, so times measure the links, not the simulator's CPU (a real device computes on its own
CPU, in parallel with the others).

The correction holds while the loop is behind now and then; a run that spends more than
``MAX_LAG_SHARE`` of its wall time behind is CPU-bound: events that would overlap on real links are
serialised, so its times are not reported at all (simulator.fleet.report says so, with what to change).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

#: Share of the wall time the loop may spend behind before a run's times are not reported ...
MAX_LAG_SHARE = 0.2
#: ... once its lag is at least this many link seconds (a short run's few milliseconds are noise).
MIN_LAG_LINK_S = 0.5
#: Wall seconds between two wake-ups of the monitor.
PERIOD_S = 0.02


@dataclass(frozen=True)
class LagReport:
    """The loop's lag over one measured span: in all, at worst, and as a share of the span's wall time."""

    total_s: float
    worst_s: float
    wall_s: float
    #: Link seconds per wall second (the run's time scale).
    scale: float = 1.0

    @property
    def share(self) -> float:
        return self.total_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_bound(self) -> bool:
        return self.share > MAX_LAG_SHARE and self.total_s * self.scale >= MIN_LAG_LINK_S

    def to_dict(self) -> dict:
        return {"total_s": round(self.total_s, 3), "worst_s": round(self.worst_s, 3), "wall_s": round(self.wall_s, 3),
                "share": round(self.share, 4), "link_s": round(self.total_s * self.scale, 3),
                "cpu_bound": self.cpu_bound, "max_share": MAX_LAG_SHARE, "min_link_s": MIN_LAG_LINK_S}


class LoopLag:
    """A task on the running loop that adds up its lag from ``start()`` on (``total_s``)."""

    def __init__(self, scale: float = 1.0, period_s: float = PERIOD_S) -> None:
        """``scale``: link seconds per wall second, to weigh the lag in link time."""
        self.scale, self.period_s = scale, period_s
        self.total_s = 0.0
        self._worst = 0.0
        self._due: float | None = None  # when the monitor should wake next
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def behind_s(self) -> float:
        """The lag so far, including the loop's current delay if the monitor is overdue right now (a callback
        reading the clock after a block, before the monitor has woken to count it)."""
        pending = 0.0 if self._due is None else max(0.0, time.monotonic() - self._due)
        return self.total_s + pending

    def mark(self) -> tuple[float, float]:
        """A point to measure from: (wall time, lag so far); it also resets the worst lag seen."""
        self._worst = 0.0
        return time.monotonic(), self.total_s

    def since(self, mark: tuple[float, float]) -> LagReport:
        """The lag between ``mark`` and now."""
        started, lag_before = mark
        return LagReport(self.total_s - lag_before, self._worst, time.monotonic() - started, self.scale)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            asked = time.monotonic()
            self._due = asked + self.period_s
            await asyncio.sleep(self.period_s)
            late = time.monotonic() - self._due
            self._due = None
            if late > 0:
                self.total_s += late
                self._worst = max(self._worst, late)
