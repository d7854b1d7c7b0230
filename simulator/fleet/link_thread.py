"""A LinkProxy for synchronous callers: its own event loop in a thread, between one device and the broker.

Tests and the reliability suite run devices in processes or threads, not on the fleet's event loop;
``ThreadedLink`` gives them the same link emulation: throttle it (``throttled``), cut it, count what it
carried (a PublishCounter as its down tap).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Coroutine
from typing import Any

from simulator.fleet.link_proxy import LinkClock, LinkProxy, Tap
from simulator.fleet.links import LinkProfile

#: The rate of a direction that is not throttled: far above what loopback carries.
UNTHROTTLED = 1e12


def throttled(down_bytes_per_s: float) -> LinkProfile:
    """A link that only limits the broker-to-device rate: no latency, loss or outages, uplink unlimited."""
    return LinkProfile("throttled", down_bytes_per_s=down_bytes_per_s, up_bytes_per_s=UNTHROTTLED,
                       description=f"{down_bytes_per_s:g} B/s down, nothing else", source="a test set-up")


class ThreadedLink:
    """A LinkProxy (real-time clock) relaying to 127.0.0.1:``target_port``; a context manager."""

    def __init__(self, target_port: int, profile: LinkProfile, *, seed: int = 0, down_tap: Tap | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="link", daemon=True)
        self._thread.start()
        self.proxy = LinkProxy(profile, ("127.0.0.1", target_port), LinkClock(1.0), random.Random(seed), down_tap)
        try:
            self._call(self.proxy.start())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def port(self) -> int:
        return self.proxy.port

    def url(self, tls: bool = False) -> str:
        """The broker's URL through this link (TLS passes through untouched)."""
        return f"mqtts://localhost:{self.port}" if tls else f"mqtt://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Abort every open connection, as a failing radio would; new connections still go through."""

        async def cut() -> None:
            self.proxy.cut()

        self._call(cut())

    def close(self) -> None:
        """Close the proxy and every connection, then stop the thread's loop."""
        if self._loop.is_closed():
            return
        try:
            self._call(self._shutdown())
        finally:
            self._stop_loop()

    def __enter__(self) -> ThreadedLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _shutdown(self) -> None:
        await self.proxy.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
