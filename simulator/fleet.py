"""A simulated fleet: Mosquitto with broker_config, N real device clients each behind its own emulated
link, one release per strategy published with the real publisher, and what every device went through.

For each strategy a fresh fleet (every device running the base file as version 1, on its own model id)
connects through its link proxy; once the devices are online (or a bounded wait has passed) the release
is published as version 2, and each device is followed until it runs the target file, refuses the
release, or the run times out. Bytes are counted at each device's proxy from the moment publishing
starts; times are link time (wall time × the time scale) from the same moment.

The broker's plain listener on 127.0.0.1 is used, with the same passwords and ACL as the TLS one: a
TLS handshake in paho blocks its caller, which one event loop serving the whole fleet cannot afford
(docs/simulator.md says what TLS would add on the wire).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from broker_config import (
    BrokerLayout,
    Listeners,
    add_user,
    free_port,
    make_test_ca,
    prepare,
    start_broker,
    stop_process,
    wait_listening,
)
from broker_config.tools import run_tool
from codec.keys import SigningKey, generate_signing_key, write_keypair
from codec.limits import DEFAULT_CHUNK_SIZE
from codec.model_files import model_suffix, slot_reader_for
from codec.topics import BrokerUrl
from device_client.config import BrokerSettings, ClientSettings, DeviceConfig
from device_client.device import Device
from device_client.store import FileModelStore
from publisher.mqtt import BrokerLogin, BrokerSession
from publisher.release_build import update_release
from publisher.release_ops import publish_release
from simulator.fleet_clients import FleetClient, Phase, serve_clients
from simulator.fleet_updates import FleetInputs, Strategy
from simulator.link_proxy import LinkClock, LinkProxy, LinkStats
from simulator.links import LinkMix, LinkProfile

log = logging.getLogger("rankcast.simulator")

PUBLISHER = "sim-publisher"
PREFIX = "rankcast"
BASE_VERSION, RELEASE_VERSION = 1, 2
_TICK_S = 0.25
_OPEN_BATCH = 25


@dataclass(frozen=True)
class FleetConfig:
    """How the fleet runs. Times are link time unless named ``wall``."""

    devices: int
    links: LinkMix
    time_scale: float = 1.0
    timeout_s: float = 3600.0
    connect_wait_s: float = 600.0
    wall_limit_s: float = 1800.0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    chunk_window: int = 8
    seed: int = 0
    keep_devices: bool = False

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError("a fleet needs at least one device")
        if not self.links.parts:
            raise ValueError("a fleet needs at least one link profile")
        if not self.time_scale > 0 or not self.timeout_s > 0:
            raise ValueError("time_scale and timeout_s must be positive")


@dataclass(frozen=True)
class DeviceResult:
    """One device's run: ``outcome`` is applied, failed (``error`` names the code) or timeout."""

    device_id: str
    link: str
    outcome: str
    completion_s: float | None
    bytes_down: int
    bytes_up: int
    reconnects: int
    lost_segments: int
    cuts: int
    error: str | None = None


@dataclass(frozen=True)
class Usage:
    """CPU seconds and peak resident memory (MiB) of the simulator process and of Mosquitto."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    broker_cpu_s: float
    broker_peak_rss_mib: float


@dataclass(frozen=True)
class StrategyResult:
    name: str
    update_bytes: int
    release_bytes: int
    chunks: int
    devices: tuple[DeviceResult, ...]
    link_s: float
    usage: Usage
    #: The model id the devices followed.
    model: str = ""
    #: With FleetConfig.keep_devices: each device's model directory is devices_dir/<device id>/models.
    devices_dir: Path | None = None

    @property
    def applied(self) -> int:
        return sum(d.outcome == "applied" for d in self.devices)

    @property
    def failed(self) -> int:
        return len(self.devices) - self.applied

    @property
    def wire_bytes_down(self) -> int:
        return sum(d.bytes_down for d in self.devices)

    @property
    def wire_bytes_up(self) -> int:
        return sum(d.bytes_up for d in self.devices)

    def completion_times(self) -> list[float]:
        return sorted(d.completion_s for d in self.devices if d.completion_s is not None)


@dataclass
class FleetResult:
    config: FleetConfig
    strategies: list[StrategyResult] = field(default_factory=list)


Progress = Callable[[str, int, int], None]


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children, such as Mosquitto, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def device_ids(count: int) -> list[str]:
    return [f"sim-{i:05d}" for i in range(count)]


class SimBroker:
    """Mosquitto running broker_config's configuration (passwords, ACL) on free loopback ports."""

    def __init__(self, root: Path, devices: list[str]) -> None:
        self.layout = BrokerLayout(Path(root))
        self.devices = devices
        self.process: subprocess.Popen | None = None
        self.port = self.dev_port = 0

    @property
    def device_password(self) -> Path:
        return self.layout.root / "device.password"

    def start(self) -> SimBroker:
        layout = self.layout
        shutil.rmtree(layout.root, ignore_errors=True)  # a fresh broker: no retained state from earlier runs
        layout.root.mkdir(parents=True)
        make_test_ca(layout)
        self._accounts()
        self.port, self.dev_port = free_port(), free_port()
        prepare(layout, Listeners(tls_port=self.port, bind="127.0.0.1", dev_port=self.dev_port), PREFIX)
        raise_file_limit()
        self.process = start_broker(layout, layout.root / "mosquitto.log")
        wait_listening("127.0.0.1", self.dev_port, self.process)
        return self

    def _accounts(self) -> None:
        """Every device shares one password (the ACL still confines each to its own id); hashed in one go."""
        password = "sim-device-password"
        self.device_password.write_text(password + "\n")
        layout = self.layout
        from broker_config.render import init_data_dir

        init_data_dir(layout, PREFIX)
        layout.passwords.write_text("".join(f"{d}:{password}\n" for d in self.devices))
        run_tool("mosquitto_passwd", ["-U", str(layout.passwords)], timeout=120)
        add_user(layout, PUBLISHER, "publisher", prefix=PREFIX)

    def publisher(self) -> BrokerSession:
        login = BrokerLogin(BrokerUrl.parse(f"mqtt://127.0.0.1:{self.dev_port}"), PUBLISHER,
                            self.layout.credential(PUBLISHER))
        return BrokerSession(login, timeout=60.0)

    def usage(self) -> tuple[float, float]:
        """(CPU seconds, peak RSS MiB) of the Mosquitto process so far."""
        return _proc_usage(self.process.pid) if self.process else (0.0, 0.0)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def __enter__(self) -> SimBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
    with SimBroker(workdir / "broker", ids) as broker:
        for strategy in inputs.strategies:
            run = _StrategyRun(config, inputs, strategy, broker, key, public, ids, profiles, workdir, progress)
            result.strategies.append(asyncio.run(run.run()))
    return result


class _StrategyRun:
    """One strategy on one fresh fleet."""

    def __init__(self, config: FleetConfig, inputs: FleetInputs, strategy: Strategy, broker: SimBroker,
                 key: SigningKey, public: Path, ids: list[str], profiles: list[LinkProfile], workdir: Path,
                 progress: Progress | None) -> None:
        self.config, self.inputs, self.strategy, self.broker = config, inputs, strategy, broker
        self.key, self.public, self.ids, self.profiles = key, public, ids, profiles
        self.home = _device_root(workdir) / strategy.name
        self.model = f"sim-{strategy.name}"
        self.progress = progress
        self.clock = LinkClock(config.time_scale)
        self.proxies: list[LinkProxy] = []
        self.clients: list[FleetClient] = []
        self.t0: float | None = None
        self.done: dict[str, tuple[str, float | None, str | None]] = {}
        self.finished = asyncio.Event()

    async def run(self) -> StrategyResult:
        release = update_release(self.strategy.update, model=self.model, version=RELEASE_VERSION, key=self.key,
                                 base_version=BASE_VERSION, chunk_size=self.config.chunk_size, lifetime_s=86400)
        started_wall, started_cpu = time.monotonic(), _cpu_s()
        # The publisher connects first: paho's own loop thread uses select(), which needs a low descriptor.
        session = self.broker.publisher()
        session.connect()
        try:
            await self._start_fleet()
            await self._wait_online()
            before = [proxy.stats.snapshot() for proxy in self.proxies]
            self.t0 = self.clock.now()
            await asyncio.get_running_loop().run_in_executor(None, publish_release, session, release, PREFIX)
            await self._wait_done()
            link_s = self.clock.now() - self.t0
            devices = self._results(before)
        finally:
            session.close()
            await self._stop_fleet()
        broker_cpu, broker_rss = self.broker.usage()
        usage = Usage(time.monotonic() - started_wall, _cpu_s() - started_cpu, _peak_rss_mib(), broker_cpu, broker_rss)
        if not self.config.keep_devices:
            shutil.rmtree(self.home.parent, ignore_errors=True)
        kept = self.home if self.config.keep_devices else None
        release_bytes = sum(map(len, release.chunks)) + 2 * len(release.envelope)
        return StrategyResult(self.strategy.name, self.strategy.update_bytes, release_bytes, len(release.chunks),
                              tuple(devices), link_s, usage, model=self.model, devices_dir=kept)

    # -- the fleet --------------------------------------------------------------------------------------------

    async def _start_fleet(self) -> None:
        loop = asyncio.get_running_loop()
        base = self.home / "base" / f"model{model_suffix(self.inputs.base)}"
        base.parent.mkdir(parents=True, exist_ok=True)
        base.write_bytes(self.inputs.base)
        target = ("127.0.0.1", self.broker.dev_port)
        for index, (device_id, profile) in enumerate(zip(self.ids, self.profiles, strict=True)):
            rng = random.Random(f"{self.config.seed}-{device_id}")
            proxy = await LinkProxy(profile, target, self.clock, rng).start()
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
        scale = self.config.time_scale
        config = DeviceConfig(
            device_id=device_id, model_dir=home / "models", trusted_keys=(self.public,), models=(self.model,),
            broker=BrokerSettings(BrokerUrl.parse(f"mqtt://127.0.0.1:{port}"), device_id,
                                  self.broker.device_password, prefix=PREFIX),
            # Status pacing is compared with the wall clock inside the session: one second of link time.
            client=ClientSettings(chunk_window=self.config.chunk_window, status_interval=max(0.02, 1.0 / scale)),
        )
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

    def _results(self, before: list[LinkStats]) -> list[DeviceResult]:
        results = []
        for client, proxy, start in zip(self.clients, self.proxies, before, strict=True):
            device_id = client.device.device_id
            outcome, completion, error = self.done.get(device_id, ("timeout", None, None))
            stats = proxy.stats.since(start)
            results.append(DeviceResult(device_id, proxy.profile.name, outcome, completion, stats.bytes_down,
                                        stats.bytes_up, client.reconnects, stats.lost_segments, stats.cuts, error))
        return results


def _device_root(workdir: Path) -> Path:
    """Where the devices' model directories live: a RAM filesystem when there is one.

    Each real device has its own flash; here hundreds share one disk, and the store's fsyncs (a few ms
    each on a disk) would queue behind one another and show up as link time. On tmpfs they cost nothing.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="rankcast-sim-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="devices-", dir=workdir))




def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_usage(pid: int) -> tuple[float, float]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        status = Path(f"/proc/{pid}/status").read_text()
        peak = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
        return cpu, peak / 1024
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0

