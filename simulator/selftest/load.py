"""Load: N devices subscribed while three releases are published back to back.

Every device runs version 1 (a small RCW model) of one shared model id, connected straight to the
broker's plain loopback listener with the simulator's machinery (simulator.fleet.SimBroker, one asyncio
loop driving simulator.fleet_clients.FleetClient per device, real device_client Devices). Once all are
online, the publisher sends release 2 (a delta on 1), release 3 (a delta on 2) and release 4 (a full
release) without pausing between them. A device that sees release 3 before it applied 2 refuses it
(wrong-base) and takes release 4, which applies to any file.

Checks: every device ends on version 4 with its exact sha256, and at every observation point (a sweep of
the whole fleet every SAMPLE_S seconds, and at the end) each device's model file hashes to one of the
four versions' sha256s and to exactly the one its store says it runs: no mixed state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.keys import generate_signing_key, write_keypair
from codec.payload import encode_payload
from codec.quantise import lowrank_record
from codec.topics import BrokerUrl
from codec.update_file import UpdateFile, read_update_file
from device_client.config import BrokerSettings, ClientSettings, DeviceConfig
from device_client.device import Device
from device_client.store import FileModelStore
from publisher.release_build import full_release, update_release
from publisher.release_ops import publish_release
from simulator.fleet import PREFIX, SimBroker, raise_file_limit
from simulator.fleet_clients import FleetClient, Phase, serve_clients
from simulator.fleet_updates import apply_update, synthetic_update
from simulator.selftest.case import Case, Outcome

log = logging.getLogger("rankcast.selftest")

MODEL = "load-model"
VERSIONS = (1, 2, 3, 4)
SAMPLE_S = 0.5
_TICK_S = 0.25
_BATCH = 25
WIDTH = 64


@dataclass(frozen=True)
class LoadResult:
    devices: int
    on_last: int
    mixed: int
    observations: int
    refusals: Counter
    connect_s: float
    converge_s: float
    timed_out: bool
    bad_devices: tuple[str, ...]


def _delta(base: bytes, seed: int) -> UpdateFile:
    rng = np.random.default_rng(seed)
    record = lowrank_record("fc1.weight", (WIDTH, WIDTH), rng.normal(size=(WIDTH, 4)) * 0.01,
                            rng.normal(size=(4, WIDTH)))
    payload, length = encode_payload([record])
    update = UpdateFile(payload, length, "delta", hashlib.sha256(base).digest(), None)
    target = apply_update(base, update)
    return UpdateFile(payload, length, "delta", update.base_sha256, hashlib.sha256(target).digest())


def build_versions(workdir: Path) -> tuple[dict[int, bytes], list]:
    """Model files of versions 1-4, and [the key's .pub path, release 2 (delta), 3 (delta), 4 (full)]."""
    base_path, rcu, _ = synthetic_update(workdir / "model", width=WIDTH, seed=7)
    files = {1: base_path.read_bytes()}
    updates = {2: read_update_file(rcu), 3: _delta(apply_update(files[1], read_update_file(rcu)), 3)}
    files[2] = apply_update(files[1], updates[2])
    files[3] = apply_update(files[2], updates[3])
    files[4] = apply_update(files[3], _delta(files[3], 4))
    key = generate_signing_key()
    _, public = write_keypair(workdir / "keys", key)
    releases = [update_release(updates[v], model=MODEL, version=v, key=key, base_version=v - 1, chunk_size=1024,
                               lifetime_s=3600) for v in (2, 3)]
    releases.append(full_release(files[4], model=MODEL, version=4, key=key, chunk_size=4096, lifetime_s=3600))
    return files, [public, *releases]


class _LoadRun:
    def __init__(self, workdir: Path, count: int, wall_limit_s: float) -> None:
        self.workdir, self.count, self.wall_limit_s = workdir, count, wall_limit_s
        self.ids = [f"load-{i:05d}" for i in range(count)]
        self.files, (self.public, *self.releases) = build_versions(workdir)
        self.sha = {v: hashlib.sha256(f).digest() for v, f in self.files.items()}
        self.version_of = {s: v for v, s in self.sha.items()}
        self.clients: list[FleetClient] = []
        self.mixed: set[str] = set()
        self.observations = 0
        #: Refusal codes each device went through on the way (e.g. wrong-base for 3 before 2 was applied).
        self.seen: dict[str, set[str]] = {}

    async def run(self, broker: SimBroker, home: Path) -> LoadResult:
        loop = asyncio.get_running_loop()
        base = home / "base.rcw"
        base.write_bytes(self.files[1])
        for index, device_id in enumerate(self.ids):
            self.clients.append(FleetClient(self._device(broker, home, device_id, base), loop,
                                            connect_timeout_s=30.0, on_service=self._observe,
                                            rng=random.Random(device_id)))
            if index % _BATCH == 0:
                await asyncio.sleep(0)
        ticker = loop.create_task(self._tick())
        started = time.monotonic()
        deadline = started + self.wall_limit_s
        session = broker.publisher()
        session.connect()
        try:
            while sum(c.phase is Phase.CONNECTED for c in self.clients) < self.count and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            connect_s = time.monotonic() - started
            self._sweep()
            published = time.monotonic()
            # Back to back: each call returns once the broker acknowledged that release's messages.
            await loop.run_in_executor(None, self._publish_all, session)
            next_sample = time.monotonic()
            while time.monotonic() < deadline:
                if time.monotonic() >= next_sample:
                    if self._sweep() == self.count:
                        break
                    next_sample = time.monotonic() + SAMPLE_S
                await asyncio.sleep(0.05)
            timed_out = self._sweep() != self.count
            converge_s = time.monotonic() - published
        finally:
            ticker.cancel()
            for client in self.clients:
                client.stop()
            await loop.run_in_executor(None, session.close)
        return self._result(connect_s, converge_s, timed_out)

    def _observe(self, client: FleetClient) -> None:
        error = client.device.updaters[MODEL].last_error
        if error is not None:
            self.seen.setdefault(client.device.device_id, set()).add(f"{error.code}@{error.release}")

    def _publish_all(self, session) -> None:
        for release in self.releases:
            publish_release(session, release, PREFIX)

    def _device(self, broker: SimBroker, home: Path, device_id: str, base: Path) -> Device:
        store = FileModelStore(home / device_id / "models")
        store.install(MODEL, base, 1)
        config = DeviceConfig(
            device_id=device_id, model_dir=home / device_id / "models", trusted_keys=(self.public,), models=(MODEL,),
            broker=BrokerSettings(BrokerUrl.parse(f"mqtt://127.0.0.1:{broker.dev_port}"), device_id,
                                  broker.device_password, prefix=PREFIX),
            client=ClientSettings(chunk_window=8, backoff_initial=0.5, backoff_max=5.0),
        )
        return Device(config, store)

    async def _tick(self) -> None:
        await serve_clients(self.clients, _BATCH, _TICK_S)

    def _sweep(self) -> int:
        """Check every device's file against its store's record; returns how many run version 4 exactly.

        Runs on the event loop thread, so no device is half-way through a commit while it looks."""
        last = 0
        for client in self.clients:
            device = client.device
            self.observations += 1
            running = device.running_models().get(MODEL)
            data = device.store.model_path(MODEL).read_bytes()
            digest = hashlib.sha256(data).digest()
            if running is None or digest not in self.version_of or self.sha.get(running[0]) != digest \
                    or running[1] != digest:
                self.mixed.add(device.device_id)
            elif running[0] == VERSIONS[-1]:
                last += 1
        return last

    def _result(self, connect_s: float, converge_s: float, timed_out: bool) -> LoadResult:
        on_last, bad, refusals = 0, [], Counter()
        for client in self.clients:
            device = client.device
            running = device.running_models().get(MODEL)
            digest = hashlib.sha256(device.store.model_path(MODEL).read_bytes()).digest()
            ok = running is not None and running[0] == VERSIONS[-1] and digest == self.sha[VERSIONS[-1]]
            on_last += ok and device.device_id not in self.mixed
            if device.device_id in self.mixed:
                bad.append(f"{device.device_id}:mixed")
            elif not ok:
                bad.append(f"{device.device_id}:v{running[0] if running else None}")
            refusals.update(self.seen.get(device.device_id, ()))
        return LoadResult(self.count, on_last, len(self.mixed), self.observations, refusals, connect_s, converge_s,
                          timed_out, tuple(bad))


def run_load(workdir: Path, devices: int, wall_limit_s: float) -> LoadResult:
    workdir.mkdir(parents=True, exist_ok=True)
    raise_file_limit()
    shm = Path("/dev/shm")
    home = Path(tempfile.mkdtemp(prefix="rankcast-load-", dir=shm if shm.is_dir() else workdir))
    run = _LoadRun(workdir, devices, wall_limit_s)
    try:
        with SimBroker(workdir / "broker", run.ids) as broker:
            return asyncio.run(run.run(broker, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(workdir: Path, quick: bool) -> Outcome:
    devices = 100 if quick else 1000
    result = run_load(workdir, devices, wall_limit_s=180.0 if quick else 600.0)
    detail = (f"{devices} devices, releases 2 (delta), 3 (delta), 4 (full) back to back: {result.on_last} end on "
              f"v4 with its sha256, {result.mixed} seen in a mixed state over {result.observations} observations; "
              f"online in {result.connect_s:.1f} s, converged {result.converge_s:.1f} s after publishing")
    if result.refusals:
        detail += f"; refusals on the way (code@release: devices): {dict(result.refusals)}"
    if result.bad_devices:
        detail += f"; FAILED: {', '.join(result.bad_devices[:5])}"
    if result.timed_out:
        detail += "; timed out"
    return Outcome("load-three-releases", devices, result.on_last, detail)


CASES = [Case("load-three-releases", "load", _run)]
