"""Load: N devices subscribed while three releases are published back to back.

Every device runs version 1 (a small RCW model) of one shared model id, connected straight to the
broker's plain loopback listener with the fleet's machinery (a testbed Broker, one asyncio loop driving
simulator.fleet.clients.FleetClient per device, real device_client Devices). Once all are
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
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.quantise import lowrank_record
from codec.topics import DEFAULT_PREFIX
from codec.update_file import UpdateFile, read_update_file, updated_model_file
from device_client.config import ClientSettings
from device_client.device import Device
from device_client.store import FileModelStore
from publisher.release.build import full_release, update_release
from publisher.release.publish import publish_release
from simulator.fleet.clients import FleetClient, Phase, serve_clients
from simulator.reliability.case import Case, Outcome
from simulator.testbed.broker import Broker
from simulator.testbed.devices import device_config
from simulator.testbed.synthetic import make_keypair, update_of, write_small_update
from simulator.testbed.usage import raise_file_limit, ram_scratch_dir

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


def _small_delta(base: bytes, seed: int) -> UpdateFile:
    """A rank-4 update of the first layer alone: a release of a few hundred bytes."""
    rng = np.random.default_rng(seed)
    return update_of(base, [lowrank_record("fc1.weight", (WIDTH, WIDTH), rng.normal(size=(WIDTH, 4)) * 0.01,
                                           rng.normal(size=(4, WIDTH)))])


def build_versions(workdir: Path) -> tuple[dict[int, bytes], list]:
    """Model files of versions 1-4, and [the key's .pub path, release 2 (delta), 3 (delta), 4 (full)]."""
    base_path, rcu, _ = write_small_update(workdir / "model", width=WIDTH, seed=7)
    files = {1: base_path.read_bytes()}
    updates = {2: read_update_file(rcu)}
    files[2] = updated_model_file(files[1], updates[2])
    updates[3] = _small_delta(files[2], seed=3)
    files[3] = updated_model_file(files[2], updates[3])
    files[4] = updated_model_file(files[3], _small_delta(files[3], seed=4))
    key, public = make_keypair(workdir / "keys")
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

    async def run(self, broker: Broker, home: Path) -> LoadResult:
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
        session = broker.publisher(broker.operator_dev_url, timeout=60.0)
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
            publish_release(session, release, DEFAULT_PREFIX)

    def _device(self, broker: Broker, home: Path, device_id: str, base: Path) -> Device:
        store = FileModelStore(home / device_id / "models")
        store.install(MODEL, base, 1)
        config = device_config(home / device_id, broker, device_id, MODEL, self.public, url=broker.dev_url,
                               client=ClientSettings(chunk_window=8, backoff_initial=0.5, backoff_max=5.0))
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
    home = ram_scratch_dir("rankcast-load-", workdir)
    run = _LoadRun(workdir, devices, wall_limit_s)
    try:
        with Broker(workdir / "broker", run.ids) as broker:
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
    failures = tuple(result.bad_devices) + (("timed out",) if result.timed_out else ())
    facts = {"devices": devices, "on_last": result.on_last, "mixed": result.mixed, "observations": result.observations,
             "refusals": dict(result.refusals), "connect_s": round(result.connect_s, 1),
             "converge_s": round(result.converge_s, 1), "timed_out": result.timed_out}
    return Outcome("load-three-releases", devices, result.on_last, detail, facts, failures)


CASES = [Case("load-three-releases", "load", _run)]
