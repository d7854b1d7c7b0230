"""Test support for the MQTT suite: a real Mosquitto set up by broker_config exactly as `rankcast broker`
does it (TLS with a test CA made by openssl, a password file made by mosquitto_passwd, the shipped ACL),
real device clients in threads, and a TCP relay that slows and cuts links. Every wait is bounded.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
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
from codec.release import Release
from codec.topics import BrokerUrl
from device_client import Device, load_config, run_device
from device_client.store import FileModelStore
from publisher.mqtt import BrokerLogin, BrokerSession
from publisher.release_ops import publish_release
from simulator.selftest.harness import wait_for as poll_until

PUBLISHER = "publisher"
DEVICE_PASSWORD = "device-password"
WAIT_S = 30.0


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``condition`` until it is true; fail the test with ``what`` after ``timeout`` seconds."""
    poll_until(condition, timeout, what)


@dataclass
class Broker:
    """A Mosquitto child process running broker_config's configuration on free loopback ports."""

    layout: BrokerLayout
    port: int
    dev_port: int
    device_ids: list[str]
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}"

    @property
    def device_password(self) -> Path:
        return self.layout.root / "device.password"

    def login(self, username: str, password_file: Path | None = None, url: str | None = None) -> BrokerLogin:
        return BrokerLogin(BrokerUrl.parse(url or self.url), username, password_file, self.layout.ca_cert)

    def publisher(self) -> BrokerSession:
        return BrokerSession(self.login(PUBLISHER, self.layout.credential(PUBLISHER)), timeout=10.0)

    def publish(self, release: Release) -> None:
        with self.publisher() as session:
            publish_release(session, release, "rankcast")

    def start(self) -> None:
        self.process = start_broker(self.layout, self.layout.root / "mosquitto.log")
        wait_listening("127.0.0.1", self.port, self.process)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its database (the retained releases) and exits."""
        stop_process(self.process)


def make_broker(root: Path, devices: int) -> Broker:
    """Test CA, a publisher, ``devices`` device accounts (one shared password), config, and a running broker."""
    layout = BrokerLayout(root)
    make_test_ca(layout)
    add_user(layout, PUBLISHER, "publisher")
    device_ids = [f"dev-{uuid.uuid4().hex[:6]}-{i:02d}" for i in range(devices)]
    for device_id in device_ids:
        add_user(layout, device_id, "device", DEVICE_PASSWORD)
    broker = Broker(layout, free_port(), free_port(), device_ids)
    broker.device_password.write_text(DEVICE_PASSWORD + "\n")
    prepare(layout, Listeners(tls_port=broker.port, bind="127.0.0.1", dev_port=broker.dev_port))
    broker.start()
    return broker


def write_device_config(home: Path, broker: Broker, device_id: str, model: str, trusted_key: Path,
                        url: str | None = None, window: int = 8) -> Path:
    """device.toml for a test device: quick reconnects and status updates."""
    config = home / "device.toml"
    config.write_text(
        f'device_id = "{device_id}"\nmodel_dir = "models"\ntrusted_keys = ["{trusted_key}"]\n'
        f'models = ["{model}"]\n\n[broker]\nurl = "{url or broker.url}"\n'
        f'password_file = "{broker.device_password}"\ncafile = "{broker.layout.ca_cert}"\n\n'
        f"[client]\nchunk_window = {window}\nbackoff_initial = 0.05\nbackoff_max = 0.5\n"
        "status_interval = 0.2\nconnect_timeout = 5\n"
    )
    return config


@dataclass
class DeviceHarness:
    """A real device client (device.toml, model store, run_device) in a thread."""

    config_path: Path
    device: Device | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> DeviceHarness:
        self.device = Device(load_config(self.config_path))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=run_device, args=(self.device, self._stop), daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: bool = True) -> None:
        """Ask the client to stop (it publishes "offline" and disconnects) and wait for it."""
        self._stop.set()
        if wait:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "the device client did not stop within 10 s"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def version(self, model: str) -> int | None:
        running = self.device.running_models().get(model)
        return running[0] if running else None

    def model_file(self, model: str) -> bytes:
        return FileModelStore(self.device.config.model_dir).model_path(model).read_bytes()
