"""Test support for the MQTT suite: real device clients in threads, their device.toml, bounded waits.
The broker is simulator.selftest.harness.SelftestBroker: a real Mosquitto set up by broker_config exactly
as `rankcast broker` does it (TLS with a test CA made by openssl, a password file made by mosquitto_passwd,
the shipped ACL). Every wait is bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from device_client import Device, load_config, run_device
from device_client.store import FileModelStore
from simulator.selftest.harness import SelftestBroker
from simulator.selftest.harness import wait_for as poll_until

WAIT_S = 30.0


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``condition`` until it is true; fail the test with ``what`` after ``timeout`` seconds."""
    poll_until(condition, timeout, what)


def write_device_config(home: Path, broker: SelftestBroker, device_id: str, model: str, trusted_key: Path,
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
