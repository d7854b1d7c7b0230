"""Bounded waits: everything the testbed waits for ends, in success or a TimeoutError naming it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How long a test waits for a device or a broker by default (seconds).
WAIT_S = 30.0


def wait_for(predicate: Callable[[], T], what: str, timeout: float = WAIT_S, poll: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something true (returned); TimeoutError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
