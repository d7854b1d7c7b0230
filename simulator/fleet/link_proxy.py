"""An emulated radio link: an asyncio TCP proxy between one device's client and the broker.

Each direction of each connection is a pump: it reads what the sender has written, waits for a token
bucket (the link's rate, shared by the device's connections in that direction), adds the stall of a
retransmission timeout for every segment the link loses, and hands the bytes to a delivery queue that
releases them after the one-way latency plus jitter, never out of order (TCP delivers a byte stream).
Because the pump reads no faster than the bucket drains, the sender sees the link's rate through TCP's
own back-pressure. An outage aborts both sides of every connection and refuses new ones until it ends.

All figures are in link time. A ``LinkClock`` with ``scale`` X runs the link X times faster than the
wall clock: rates are multiplied by X, latencies and stalls divided by X, and ``clock.now()`` reports
link time (wall time × X, less the time the event loop was behind when a LoopLag is given: while it is
behind no link moves) for the measurements.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from simulator.fleet.links import LinkProfile
from simulator.fleet.loop_lag import LoopLag

#: TCP maximum segment size on a 1500-byte MTU; loss is drawn per segment of this size.
MSS = 1460

#: Makes, for each connection, a function that sees every byte delivered to the device, in order.
Tap = Callable[[], Callable[[bytes], None]]

#: Makes, for each connection, the functions (up, down) that see every byte each way as it is counted.
WireTap = Callable[[], tuple[Callable[[bytes], None], Callable[[bytes], None]]]


class LinkClock:
    """Link time: wall time since the clock was made, less ``lag``'s total (if given), times ``scale``."""

    def __init__(self, scale: float = 1.0, lag: LoopLag | None = None) -> None:
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the time scale must be a positive number, got {scale!r}")
        self.scale, self.lag = float(scale), lag
        self._origin = time.monotonic()
        self._lag_before = lag.behind_s() if lag else 0.0
        self._latest = 0.0

    def now(self) -> float:
        """Link seconds since the clock was made; never less than it said before."""
        behind = self.lag.behind_s() - self._lag_before if self.lag else 0.0
        self._latest = max(self._latest, (time.monotonic() - self._origin - behind) * self.scale)
        return self._latest

    def wall(self, link_seconds: float) -> float:
        """Wall seconds for ``link_seconds`` of link time."""
        return link_seconds / self.scale

    async def sleep(self, link_seconds: float) -> None:
        """Wait ``link_seconds`` of link time (longer in wall time when the loop falls behind meanwhile)."""
        until = self.now() + max(0.0, link_seconds)
        while (left := until - self.now()) > 1e-9:
            await asyncio.sleep(left / self.scale)


class TokenBucket:
    """``rate`` bytes per second with a burst of ``burst`` bytes; tokens may go into debt."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")
        self.rate, self.burst = rate, burst
        self._tokens = burst
        self._time: float | None = None

    def take(self, size: int, now: float) -> float:
        """Take ``size`` bytes' tokens at ``now``; the seconds until the last of them may leave."""
        if self._time is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._time) * self.rate)
        self._time = now
        self._tokens -= size
        return max(0.0, -self._tokens / self.rate)


@dataclass
class LinkStats:
    """What one device's link carried, counted as the bytes leave the sending side of the link."""

    bytes_up: int = 0
    bytes_down: int = 0
    connections: int = 0
    refused: int = 0
    cuts: int = 0
    lost_segments: int = 0

    def snapshot(self) -> LinkStats:
        return LinkStats(**vars(self))

    def since(self, earlier: LinkStats) -> LinkStats:
        return LinkStats(**{key: value - getattr(earlier, key) for key, value in vars(self).items()})


class LinkProxy:
    """Listens on 127.0.0.1:``port`` and relays each connection to ``target`` through the profile's link;
    ``down_tap`` (optional) watches what each connection delivers to the device, ``wire_tap`` (optional)
    what each connection carries each way, at the moment ``stats`` counts it (simulator.fleet.wire_bytes)."""

    def __init__(
        self,
        profile: LinkProfile,
        target: tuple[str, int],
        clock: LinkClock,
        rng: random.Random | None = None,
        down_tap: Tap | None = None,
        wire_tap: WireTap | None = None,
    ) -> None:
        self.profile, self.target, self.clock = profile, target, clock
        self.rng = rng or random.Random()
        self.down_tap, self.wire_tap = down_tap, wire_tap
        self.stats = LinkStats()
        burst = 2 * MSS
        self._buckets = {"up": TokenBucket(profile.up_bytes_per_s, burst),
                         "down": TokenBucket(profile.down_bytes_per_s, burst)}
        self._links: set[_Link] = set()
        self._down_until = -1.0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    @property
    def is_down(self) -> bool:
        return self.clock.now() < self._down_until

    async def start(self) -> LinkProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=64)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.profile.outages:
            self._spawn(self._scheduled_outages())
        if self.profile.outage_rate_per_hour > 0:
            self._spawn(self._random_outages())
        return self

    async def close(self) -> None:
        """Stop listening and abort every connection (bounded: nothing here waits on the peer)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        self.cut(count=False)

    def cut(self, count: bool = True) -> None:
        """Abort every open connection, as a lost radio bearer would."""
        if count and self._links:
            self.stats.cuts += 1
        for link in list(self._links):
            link.abort()

    def outage(self, duration_s: float) -> None:
        """Cut now and refuse connections for ``duration_s`` of link time."""
        self._down_until = max(self._down_until, self.clock.now() + duration_s)
        self.cut()

    async def _scheduled_outages(self) -> None:
        """The profile's scheduled outages, timed from the clock's start."""
        for outage in self.profile.outages:
            await self.clock.sleep(outage.at_s - self.clock.now())
            self.outage(outage.duration_s)

    async def _random_outages(self) -> None:
        """Outages at exponentially distributed intervals (a Poisson process at the profile's rate)."""
        profile = self.profile
        while True:
            await self.clock.sleep(self.rng.expovariate(profile.outage_rate_per_hour / 3600))
            self.outage(profile.outage_duration_s)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_down:
            self.stats.refused += 1
            writer.transport.abort()
            return
        link = _Link(self, writer)
        self._links.add(link)
        self.stats.connections += 1
        try:
            await link.run(reader)
        except asyncio.CancelledError:
            link.abort()  # the fleet is shutting down; end this handler quietly
        finally:
            self._links.discard(link)

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class _Link:
    """One TCP connection through the proxy: the device side, the broker side, a pump each way."""

    def __init__(self, proxy: LinkProxy, device: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.device = device
        self.broker: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task] = []

    def abort(self) -> None:
        for writer in (self.device, self.broker):
            if writer is not None:
                writer.transport.abort()
        for task in self._tasks:
            task.cancel()

    async def run(self, device_reader: asyncio.StreamReader) -> None:
        proxy = self.proxy
        try:
            await proxy.clock.sleep(proxy.profile.rtt_s)  # the TCP handshake over the link
            broker_reader, self.broker = await asyncio.wait_for(asyncio.open_connection(*proxy.target), 10)
        except (TimeoutError, OSError):
            self.abort()
            return
        if proxy.is_down or self.device.transport.is_closing():
            self.abort()
            return
        tap = proxy.down_tap() if proxy.down_tap else None
        wire_up, wire_down = proxy.wire_tap() if proxy.wire_tap else (None, None)
        self._tasks = [
            asyncio.ensure_future(_Pump(proxy, "up", wire=wire_up).run(device_reader, self.broker)),
            asyncio.ensure_future(_Pump(proxy, "down", tap, wire_down).run(broker_reader, self.device)),
        ]
        try:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self.abort()
            raise
        if any(task.exception() is not None for task in done):  # a reset or a failure: drop the link as it dropped
            self.abort()
        else:
            self.close()

    def close(self) -> None:
        """One side ended: close both after what they were sent (an abort would reset them, and a broker
        reset right after a DISCONNECT may never read it, taking a clean disconnect for a dropped one)."""
        for writer in (self.device, self.broker):
            if writer is not None:
                writer.close()
        for task in self._tasks:
            task.cancel()


class _Pump:
    """One direction of one connection; ``tap`` sees every byte it delivers, ``wire`` every byte it counts."""

    def __init__(self, proxy: LinkProxy, direction: str, tap: Callable[[bytes], None] | None = None,
                 wire: Callable[[bytes], None] | None = None) -> None:
        self.proxy, self.direction, self.tap, self.wire = proxy, direction, tap, wire
        profile = proxy.profile
        rate = profile.up_bytes_per_s if direction == "up" else profile.down_bytes_per_s
        # Read about a tenth of a second of link time at once: fine-grained on slow links, cheap on fast ones.
        self.read_size = int(min(64 * 1024, max(MSS, rate * 0.1)))
        self.queue: deque[tuple[float, bytes]] = deque()
        self.ready = asyncio.Event()
        self.ended = False

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        delivery = asyncio.ensure_future(self._deliver(writer))
        try:
            await self._read(reader)
            self.ended = True
            self.ready.set()
            await delivery
        finally:
            delivery.cancel()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        proxy, profile, clock = self.proxy, self.proxy.profile, self.proxy.clock
        bucket, last = proxy._buckets[self.direction], 0.0
        while data := await reader.read(self.read_size):
            wait = bucket.take(len(data), clock.now())
            lost = sum(proxy.rng.random() < profile.loss for _ in range(math.ceil(len(data) / MSS)))
            if lost:
                proxy.stats.lost_segments += lost
                wait += lost * profile.rto_s
            await clock.sleep(wait)
            if self.direction == "up":
                proxy.stats.bytes_up += len(data)
            else:
                proxy.stats.bytes_down += len(data)
            if self.wire is not None:
                self.wire(data)
            delay = profile.latency_s + (proxy.rng.gauss(0, profile.jitter_s) if profile.jitter_s else 0.0)
            last = max(last, clock.now() + max(0.0, delay))
            self.queue.append((last, data))
            self.ready.set()

    async def _deliver(self, writer: asyncio.StreamWriter) -> None:
        clock = self.proxy.clock
        while True:
            if not self.queue:
                if self.ended:
                    return
                self.ready.clear()
                await self.ready.wait()
                continue
            at, data = self.queue.popleft()
            await clock.sleep(at - clock.now())
            writer.write(data)
            if self.tap is not None:
                self.tap(data)
            await writer.drain()
