"""The emulated link: rate, latency, loss stalls and outages, measured in link time through a real proxy.

A local asyncio server stands in for the broker. Bounds are generous: the machine is shared.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from simulator.fleet.link_proxy import MSS, LinkClock, LinkProxy, TokenBucket
from simulator.fleet.links import LinkProfile, Outage

SCALE = 10.0


def profile(**overrides) -> LinkProfile:
    values = {"name": "test", "down_bytes_per_s": 1e9, "up_bytes_per_s": 1e9} | overrides
    return LinkProfile(**values)


class Sink:
    """A TCP server that counts what it receives (in link time, by the test's clock)."""

    def __init__(self) -> None:
        self.received = 0
        self.first_byte: float | None = None
        self.done = asyncio.Event()
        self.expect = 0
        self.clock: LinkClock | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer) -> None:
        while data := await reader.read(65536):
            if self.first_byte is None:
                self.first_byte = self.clock.now()
            self.received += len(data)
            if self.received >= self.expect:
                self.done.set()
        writer.close()


async def _through(link: LinkProfile, payload: bytes, scale: float = SCALE, seed: int = 0):
    """Send ``payload`` up through a proxy; (link seconds until the sink had it all, first byte, proxy)."""
    sink = Sink()
    port = await sink.start()
    clock = LinkClock(scale)
    sink.clock, sink.expect = clock, len(payload)
    proxy = await LinkProxy(link, ("127.0.0.1", port), clock, random.Random(seed)).start()
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    start = clock.now()
    writer.write(payload)
    await asyncio.wait_for(sink.done.wait(), 20)
    elapsed = clock.now() - start
    writer.close()
    await proxy.close()
    sink.server.close()
    return elapsed, sink.first_byte - start, proxy


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True once the proxy closed or reset the connection (within 5 s)."""
    try:
        return await asyncio.wait_for(reader.read(10), 5) == b""
    except ConnectionError:
        return True


def test_the_token_bucket_lets_a_burst_through_then_paces_at_its_rate():
    bucket = TokenBucket(rate=1000, burst=500)
    assert bucket.take(500, now=0.0) == 0
    assert bucket.take(1000, now=0.0) == pytest.approx(1.0)
    assert bucket.take(1000, now=0.0) == pytest.approx(2.0)
    assert bucket.take(100, now=10.0) == 0  # refilled, capped at the burst


def test_a_transfer_takes_its_size_over_the_rate_in_link_time():
    rate = 20_000
    elapsed, _, proxy = asyncio.run(_through(profile(up_bytes_per_s=rate), bytes(60_000)))
    expected = 60_000 / rate  # 3 s of link time, 0.3 s of wall time at scale 10
    assert 0.8 * expected < elapsed < 2.0 * expected
    assert proxy.stats.bytes_up == 60_000


def test_latency_delays_the_first_byte_by_the_handshake_and_one_way_latency():
    elapsed, first, _ = asyncio.run(_through(profile(latency_s=1.0), b"hello"))
    assert 2.9 < first < 5.0  # one round trip for the TCP handshake (2 s) + one way (1 s)
    assert elapsed >= first


def test_lost_segments_stall_the_transfer_by_a_retransmission_timeout_each():
    link = profile(up_bytes_per_s=100_000, loss=0.2, latency_s=0.05)
    size = 40 * MSS
    elapsed, _, proxy = asyncio.run(_through(link, bytes(size)))
    lost = proxy.stats.lost_segments
    assert lost > 0
    assert elapsed >= size / 100_000 + 0.8 * lost * link.rto_s


def test_an_outage_cuts_the_connection_and_refuses_new_ones_until_it_ends():
    async def scenario() -> None:
        sink = Sink()
        port = await sink.start()
        clock = LinkClock(SCALE)
        sink.clock, sink.expect = clock, 1
        link = profile(outages=(Outage(at_s=1.0, duration_s=3.0),))
        proxy = await LinkProxy(link, ("127.0.0.1", port), clock).start()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        await asyncio.wait_for(sink.done.wait(), 5)
        assert await _closed(reader)  # cut at 1 s of link time
        assert proxy.stats.cuts == 1
        reader, _ = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await _closed(reader)  # refused during the outage
        assert proxy.stats.refused >= 1
        await clock.sleep(4.5 - clock.now())
        sink.done.clear()
        sink.expect = sink.received + 2
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"yz")
        await asyncio.wait_for(sink.done.wait(), 5)  # after the outage the link carries data again
        writer.close()
        await proxy.close()
        sink.server.close()

    asyncio.run(scenario())


def test_the_time_scale_makes_link_time_run_faster_than_wall_time():
    clock = LinkClock(50)
    asyncio.run(clock.sleep(5.0))  # 0.1 s of wall time
    assert 4.5 < clock.now() < 20
