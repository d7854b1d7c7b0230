"""A simulated fleet: Mosquitto with broker_config, N real device clients each behind its own emulated
link, one release per strategy published with the real publisher, and what every device went through.

For each strategy a fresh fleet (every device running the base file as version 1, on its own model id)
connects through its link proxy; once the devices are online (or a bounded wait has passed) the release
is published as version 2, and each device is followed until it runs the target file, refuses the
release, or the run times out. Bytes are counted at each device's proxy from the moment publishing
starts until the links have fallen quiet after it (the last acknowledgements and statuses), split by
category (simulator.fleet.wire_bytes); times are link time (wall time less the event loop's lag, × the
time scale) from the same moment, and the lag over that span says whether they can be trusted
(simulator.fleet.loop_lag: a CPU-bound run's are not reported).

The broker's plain listener on 127.0.0.1 is used, with the same passwords and ACL as the TLS one: a
TLS handshake in paho blocks its caller, which one event loop serving the whole fleet cannot afford
(docs/simulator.md says what TLS would add on the wire).
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from codec.keys import SigningKey, generate_signing_key, write_keypair
from codec.model_files import model_suffix, slot_reader_for
from device_client.config import ClientSettings
from device_client.device import Device
from device_client.store import FileModelStore
from publisher.release.build import update_release
from publisher.release.publish import publish_release
from simulator.fleet.clients import FleetClient, Phase, serve_clients
from simulator.fleet.config import FleetConfig
from simulator.fleet.inputs import FleetInputs, Strategy
from simulator.fleet.link_proxy import LinkClock, LinkProxy, LinkStats
from simulator.fleet.links import LinkProfile
from simulator.fleet.loop_lag import LoopLag
from simulator.fleet.results import DeviceResult, FleetResult, StrategyResult, Usage
from simulator.fleet.wire_bytes import WireBytes, WireTally
from simulator.testbed.broker import Broker
from simulator.testbed.devices import device_config
from simulator.testbed.usage import own_cpu_s, own_peak_rss_mib, raise_file_limit, ram_scratch_dir

log = logging.getLogger("rankcast.simulator")

BASE_VERSION, RELEASE_VERSION = 1, 2
_TICK_S = 0.25
_OPEN_BATCH = 25
#: Link seconds at most to wait, once every device is done, for the links to fall quiet (_settle).
_SETTLE_LIMIT_S = 60.0

Progress = Callable[[str, int, int], None]


def device_ids(count: int) -> list[str]:
    return [f"sim-{i:05d}" for i in range(count)]


def run_fleet(
    config: FleetConfig,
    inputs: FleetInputs,
    workdir: Path,
    progress: Progress | None = None,
) -> FleetResult:
    """Run every strategy of ``inputs`` on a fresh fleet of ``config.devices`` devices; see the module doc."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    raise_file_limit()
    key = generate_signing_key()
    shutil.rmtree(workdir / "keys", ignore_errors=True)
    _, public = write_keypair(workdir / "keys", key)
    ids = device_ids(config.devices)
    profiles = config.links.assign(config.devices)
    result = FleetResult(config)
    with Broker(workdir / "broker", ids) as broker:
        for strategy in inputs.strategies:
            run = _StrategyRun(config, inputs, strategy, broker, key, public, ids, profiles, workdir, progress)
            result.strategies.append(asyncio.run(run.run()))
    return result


class _StrategyRun:
    """One strategy on one fresh fleet."""

    def __init__(self, config: FleetConfig, inputs: FleetInputs, strategy: Strategy, broker: Broker,
                 key: SigningKey, public: Path, ids: list[str], profiles: list[LinkProfile], workdir: Path,
                 progress: Progress | None) -> None:
        self.config, self.inputs, self.strategy, self.broker = config, inputs, strategy, broker
        self.key, self.public, self.ids, self.profiles = key, public, ids, profiles
        self.home = ram_scratch_dir("rankcast-sim-", workdir) / strategy.name
        self.model = f"sim-{strategy.name}"
        self.progress = progress
        self.lag = LoopLag(config.time_scale)
        self.clock = LinkClock(config.time_scale, self.lag)
        self.proxies: list[LinkProxy] = []
        self.tallies: list[WireTally] = []
        self.clients: list[FleetClient] = []
        self.t0: float | None = None
        self.done: dict[str, tuple[str, float | None, str | None]] = {}
        self.finished = asyncio.Event()

    async def run(self) -> StrategyResult:
        release = update_release(self.strategy.update, model=self.model, version=RELEASE_VERSION, key=self.key,
                                 base_version=BASE_VERSION, chunk_size=self.config.chunk_size, lifetime_s=86400)
        started_wall, started_cpu = time.monotonic(), own_cpu_s()
        # The publisher connects first: paho's own loop thread uses select(), which needs a low descriptor.
        session = self.broker.publisher(self.broker.operator_dev_url, timeout=60.0)
        session.connect()
        self.lag.start()
        try:
            await self._start_fleet()
            await self._wait_online()
            before = [(proxy.stats.snapshot(), tally.snapshot()) for proxy, tally in zip(self.proxies, self.tallies,
                                                                                          strict=True)]
            self.t0 = self.clock.now()
            mark = self.lag.mark()
            await asyncio.get_running_loop().run_in_executor(None, publish_release, session, release,
                                                              self.broker.prefix)
            await self._wait_done()
            link_s = self.clock.now() - self.t0
            loop_lag = self.lag.since(mark)
            await self._settle()
            devices = self._results(before)
        finally:
            session.close()
            await self._stop_fleet()
            await self.lag.stop()
        broker_cpu, broker_rss = self.broker.usage()
        usage = Usage(time.monotonic() - started_wall, own_cpu_s() - started_cpu, own_peak_rss_mib(), broker_cpu,
                      broker_rss)
        if not self.config.keep_devices:
            shutil.rmtree(self.home.parent, ignore_errors=True)
        kept = self.home if self.config.keep_devices else None
        release_bytes = sum(map(len, release.chunks)) + 2 * len(release.envelope)
        if loop_lag.cpu_bound:
            log.warning("%s: the event loop fell behind %.1f s of %.1f s (%.0f%%): too much to leave out of link time",
                        self.strategy.name, loop_lag.total_s, loop_lag.wall_s, 100 * loop_lag.share)
        return StrategyResult(self.strategy.name, self.strategy.update_bytes, release_bytes, len(release.chunks),
                              tuple(devices), link_s, usage, model=self.model, devices_dir=kept, loop_lag=loop_lag,
                              payload_bytes=sum(map(len, release.chunks)))

    # -- the fleet --------------------------------------------------------------------------------------------

    async def _start_fleet(self) -> None:
        loop = asyncio.get_running_loop()
        base = self.home / "base" / f"model{model_suffix(self.inputs.base)}"
        base.parent.mkdir(parents=True, exist_ok=True)
        base.write_bytes(self.inputs.base)
        target = ("127.0.0.1", self.broker.dev_port)
        for index, (device_id, profile) in enumerate(zip(self.ids, self.profiles, strict=True)):
            rng = random.Random(f"{self.config.seed}-{device_id}")
            tally = WireTally(self.broker.prefix)
            proxy = await LinkProxy(profile, target, self.clock, rng, wire_tap=tally.connection).start()
            self.tallies.append(tally)
            device = self._device(device_id, proxy.port, base)
            self.proxies.append(proxy)
            self.clients.append(FleetClient(device, loop, time_scale=self.config.time_scale,
                                            connect_timeout_s=self._connect_timeout(profile),
                                            on_service=self._observe, rng=rng))
            if index % _OPEN_BATCH == 0:
                await asyncio.sleep(0)
        self._ticker = loop.create_task(self._tick())

    def _device(self, device_id: str, port: int, base: Path) -> Device:
        home = self.home / device_id
        store = FileModelStore(home / "models", model_suffix(self.inputs.base), slot_reader_for(self.inputs.base))
        store.install(self.model, base, BASE_VERSION)
        # Status pacing is compared with the wall clock inside the session: the default, in link time.
        client = ClientSettings(chunk_window=self.config.chunk_window,
                                status_interval=max(0.02, ClientSettings().status_interval / self.config.time_scale))
        config = device_config(home, self.broker, device_id, self.model, self.public,
                               url=f"mqtt://127.0.0.1:{port}", client=client)
        return Device(config, store)

    def _connect_timeout(self, profile: LinkProfile) -> float:
        """Wall seconds to wait for CONNACK: a few round trips of link time, never under 15 s of wall time."""
        return max(15.0, self.clock.wall(30 * profile.rtt_s + 30))

    async def _tick(self) -> None:
        await serve_clients(self.clients, _OPEN_BATCH, _TICK_S)

    async def _wait_online(self) -> None:
        deadline = time.monotonic() + min(self.config.wall_limit_s, self.clock.wall(self.config.connect_wait_s))
        while time.monotonic() < deadline:
            online = sum(c.phase is Phase.CONNECTED for c in self.clients)
            if self.progress:
                self.progress("connecting", online, len(self.clients))
            if online == len(self.clients):
                return
            await asyncio.sleep(0.1)
        log.warning("%d of %d devices online; publishing anyway", online, len(self.clients))

    async def _wait_done(self) -> None:
        wall = min(self.config.wall_limit_s, self.clock.wall(self.config.timeout_s))
        try:
            await asyncio.wait_for(self.finished.wait(), wall)
        except TimeoutError:
            log.warning("%s: %d of %d devices finished before the timeout", self.strategy.name, len(self.done),
                        len(self.clients))

    async def _settle(self) -> None:
        """Let what the release set off finish before bytes are read: the last acknowledgements and statuses,
        and any reconnect under way. Done when no link has carried a byte for two of its slowest round trips
        and a second (and three of the clients' ticks), or after _SETTLE_LIMIT_S link seconds."""
        quiet = max(self.clock.wall(2 * max(p.rtt_s for p in self.profiles) + 1.0), 3 * _TICK_S)
        deadline = time.monotonic() + min(self.config.wall_limit_s, self.clock.wall(_SETTLE_LIMIT_S))
        carried, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_carried = sum(p.stats.bytes_up + p.stats.bytes_down for p in self.proxies)
            busy = any(c.phase is Phase.CONNECTING for c in self.clients)
            if now_carried != carried or busy:
                carried, since = now_carried, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            await asyncio.sleep(0.05)

    async def _stop_fleet(self) -> None:
        ticker = getattr(self, "_ticker", None)
        if ticker is not None:
            ticker.cancel()
        for client in self.clients:
            client.stop()
        for proxy in self.proxies:
            await proxy.close()
        await asyncio.sleep(0)

    def _observe(self, client: FleetClient) -> None:
        """After each round of a device's I/O: has it committed or refused the release?"""
        device_id = client.device.device_id
        if self.t0 is None or device_id in self.done:
            return
        status = client.device.status()
        running = status.models.get(self.model)
        if running is not None and running[0] == RELEASE_VERSION:
            self.done[device_id] = ("applied", self.clock.now() - self.t0, None)
        elif status.last_error is not None and status.last_error.release == RELEASE_VERSION:
            self.done[device_id] = ("failed", None, status.last_error.code)
        else:
            return
        if self.progress:
            self.progress(self.strategy.name, len(self.done), len(self.clients))
        if len(self.done) == len(self.clients):
            self.finished.set()

    def _results(self, before: list[tuple[LinkStats, WireBytes]]) -> list[DeviceResult]:
        results = []
        for client, proxy, tally, (start, wire) in zip(self.clients, self.proxies, self.tallies, before, strict=True):
            device_id = client.device.device_id
            outcome, completion, error = self.done.get(device_id, ("timeout", None, None))
            stats = proxy.stats.since(start)
            results.append(DeviceResult(device_id, proxy.profile.name, outcome, completion, stats.bytes_down,
                                        stats.bytes_up, client.reconnects, stats.lost_segments, stats.cuts, error,
                                        tally.snapshot().since(wire)))
        return results
