"""Fixtures of the MQTT suite: one broker for the session (tests use their own model ids and device
accounts), a broker of its own for tests that restart it, device clients and link relays.
Brokers and relays are simulator.selftest.harness's SelftestBroker and Relay; device clients are in
fleet_harness.py; models and releases come from tests/device_client/release_factory.py."""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1] / "device_client")]

import release_factory as rf  # noqa: E402
from fleet_harness import DeviceHarness, write_device_config  # noqa: E402

from codec.keys import SigningKey  # noqa: E402
from device_client.store import FileModelStore  # noqa: E402
from simulator.selftest.harness import Relay, SelftestBroker  # noqa: E402

DEVICE_POOL = 48


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SelftestBroker]:
    with SelftestBroker(tmp_path_factory.mktemp("broker"), devices=DEVICE_POOL) as running:
        yield running


@pytest.fixture(scope="session")
def _pool(broker: SelftestBroker) -> Iterator[str]:
    return iter(broker.device_ids)


@pytest.fixture
def device_ids(_pool: Iterator[str]) -> Callable[[int], list[str]]:
    """Fresh device accounts of the session broker (ids are never reused between tests)."""
    return lambda count: list(itertools.islice(_pool, count))


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[SelftestBroker]:
    """A broker of this test's own, for tests that stop and restart it."""
    with SelftestBroker(tmp_path / "own-broker", devices=2) as running:
        yield running


@pytest.fixture
def model_id() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def signing(tmp_path: Path) -> tuple[SigningKey, Path]:
    return rf.keypair(tmp_path / "keys")


@pytest.fixture
def make_device(tmp_path: Path, signing) -> Iterator[Callable[..., DeviceHarness]]:
    """A device following ``model`` with ``base`` installed as ``version`` (None: nothing), started."""
    started: list[DeviceHarness] = []

    def make(broker: SelftestBroker, device_id: str, model: str, base: bytes | None, version: int = 1,
             url: str | None = None, window: int = 8) -> DeviceHarness:
        home = tmp_path / device_id
        home.mkdir(exist_ok=True)
        config = write_device_config(home, broker, device_id, model, signing[1], url, window)
        if base is not None and not (home / "models" / model).exists():
            (home / "base.rcw").write_bytes(base)
            FileModelStore(home / "models").install(model, home / "base.rcw", version)
        started.append(DeviceHarness(config).start())
        return started[-1]

    yield make
    running = [harness for harness in started if harness.alive]
    for harness in running:
        harness.stop(wait=False)
    for harness in running:
        harness.stop()


@pytest.fixture
def link_proxy() -> Iterator[Callable[[SelftestBroker, float], Relay]]:
    proxies: list[Relay] = []

    def make(target: SelftestBroker, bytes_per_second: float) -> Relay:
        proxies.append(Relay(target.port, bytes_per_second))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()
