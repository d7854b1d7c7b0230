"""The device's notion of time: its clock, never below a floor it keeps on disk.

The floor is the newest creation time of a signed document the device verified (a trust root or a
manifest signed by a key it trusts): whoever signed it says the time was at least that. A device whose
clock restarts in the past (a Raspberry Pi has no real-time clock; fake-hwclock restores the time it
saved) so cannot take a release that expired before a document it has seen was signed. A clock that runs
ahead is not corrected by this (nothing signed says what the time is not); once it is set right, refusals
for expiry are reconsidered (device_client.updater). What expiry protects and what it cannot without a
trusted time source: docs/security.md, "Time".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from device_client.files import write_atomic

log = logging.getLogger("rankcast.device")


class TimeFloor:
    """``now()`` is ``max(clock(), floor)``; ``witness(created)`` raises the floor, persisted in ``path``."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = Path(path), clock
        self.floor = self._read()

    def now(self) -> float:
        return max(self.clock(), self.floor)

    @property
    def behind(self) -> bool:
        """Whether the device's clock is behind the floor (so the floor is what the device goes by)."""
        return self.clock() < self.floor

    def witness(self, created: int) -> None:
        """A verified document was signed at ``created``: time is at least that from now on."""
        if created <= self.floor:
            return
        self.floor = created
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"floor": created}).encode())

    def _read(self) -> int:
        if not self.path.exists():
            return 0
        try:
            return int(json.loads(self.path.read_text())["floor"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s is damaged; the time floor starts again from the next signed document", self.path)
            return 0
