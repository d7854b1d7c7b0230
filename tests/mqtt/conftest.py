"""Fixtures of the MQTT suite: one broker for the session (tests use their own model ids and device
accounts), a broker of its own for tests that restart it, device clients in threads and throttled links.
Everything is simulator.testbed's (brokers, device homes and threads, synthetic models and releases)
and simulator.fleet's link emulation."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from codec.keys import SigningKey
from simulator.fleet.link_thread import ThreadedLink, throttled
from simulator.testbed import synthetic
from simulator.testbed.broker import Broker
from simulator.testbed.devices import QUICK_CLIENT, DeviceHome, DeviceThread

DEVICE_POOL = 96


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with Broker(tmp_path_factory.mktemp("broker") / "broker", devices=DEVICE_POOL) as running:
        yield running


@pytest.fixture(scope="session")
def _pool(broker: Broker) -> Iterator[str]:
    return iter(broker.device_ids)


@pytest.fixture
def device_ids(_pool: Iterator[str]) -> Callable[[int], list[str]]:
    """Fresh device accounts of the session broker (ids are never reused between tests)."""
    return lambda count: list(itertools.islice(_pool, count))


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test's own, for tests that stop and restart it."""
    with Broker(tmp_path / "own-broker", devices=2) as running:
        yield running


@pytest.fixture
def model_id() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def signing(tmp_path: Path) -> tuple[SigningKey, Path]:
    return synthetic.make_keypair(tmp_path / "keys")


@pytest.fixture
def make_device(tmp_path: Path, signing) -> Iterator[Callable[..., DeviceThread]]:
    """A device following ``model`` with ``base`` installed as ``version`` (None: nothing), started;
    ``client``: [client] settings other than the quick ones (status_interval=5, ...)."""
    started: list[DeviceThread] = []

    def make(broker: Broker, device_id: str, model: str, base: bytes | None, version: int = 1,
             url: str | None = None, window: int = 8, **client: float) -> DeviceThread:
        home = DeviceHome.create(tmp_path / device_id, broker, device_id, model, signing[1], url=url,
                                 client=replace(QUICK_CLIENT, chunk_window=window, **client))
        if base is not None and not (home.model_dir / model).exists():
            home.install(model, base, version)
        started.append(DeviceThread(home))
        return started[-1]

    yield make
    running = [device for device in started if device.alive]
    for device in running:
        device.stop(wait=False)
    for device in running:
        device.stop()


@pytest.fixture
def link_proxy() -> Iterator[Callable[[Broker, float], ThreadedLink]]:
    """A link to ``broker``'s TLS listener that carries at most ``bytes_per_second`` to the device."""
    links: list[ThreadedLink] = []

    def make(target: Broker, bytes_per_second: float) -> ThreadedLink:
        links.append(ThreadedLink(target.port, throttled(bytes_per_second)))
        return links[-1]

    yield make
    for link in links:
        link.close()
