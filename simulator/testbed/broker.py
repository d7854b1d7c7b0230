"""Mosquitto as rankcast runs it, on free loopback ports, for tests, fleets and the reliability suite.

    with Broker(workdir / "broker", devices=2) as broker:
        broker.publish(release)                        # as the publisher, every message acknowledged
        home = DeviceHome.create(workdir / "dev", broker, broker.device_ids[0], "digits", public)

The broker is set up exactly as `rankcast broker` sets it up (broker_config: a test CA, the password
files, the shipped ACL and mosquitto.conf with persistence): devices log in over TLS on ``port``,
publishers on ``operator_port``; the plain loopback development listeners ``dev_port`` (devices) and
``operator_dev_port`` (publishers) have the same accounts and ACL, for clients that read the MQTT stream
or that one event loop drives by the thousand (a TLS handshake in paho blocks its caller).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from broker_config import (
    BrokerLayout,
    Listeners,
    add_devices,
    add_user,
    free_ports,
    make_test_ca,
    prepare,
    start_broker,
    stop_process,
    wait_listening,
)
from codec.release import Release
from codec.topics import DEFAULT_PREFIX, BrokerUrl
from publisher.release.publish import publish_release
from publisher.release.session import BrokerLogin, BrokerSession
from simulator.testbed.usage import process_usage, raise_file_limit

#: The publisher account every testbed broker has, and its read-only collector (for dashboards).
PUBLISHER = "testbed-publisher"
COLLECTOR = "testbed-collector"
_OPERATORS = (PUBLISHER, COLLECTOR)


class Broker:
    """Mosquitto with the project's configuration as a child process; a context manager.

    Accounts: the publisher (``PUBLISHER``), a collector (``COLLECTOR``) and the device ids (``devices`` of
    them, or the ids given), sharing one password whose file is ``device_password``; the ACL still confines
    each device to its own id. The data directory ``root`` starts empty (no retained state from earlier runs: an earlier
    broker's directory is cleared, any other non-empty directory refused); ``stop()``
    sends SIGTERM (Mosquitto saves its database), ``start()`` starts it again on the same data and ports.
    """

    def __init__(self, root: Path, devices: int | Sequence[str] = 1, prefix: str = DEFAULT_PREFIX) -> None:
        self.layout = BrokerLayout(Path(root))
        self.prefix = prefix
        self.device_ids = [f"device-{i:03d}" for i in range(devices)] if isinstance(devices, int) else list(devices)
        self.port, self.dev_port, self.operator_port, self.operator_dev_port = free_ports(4)
        self.process: subprocess.Popen | None = None
        _fresh_directory(self.layout)
        make_test_ca(self.layout)
        add_user(self.layout, PUBLISHER, "publisher", prefix=prefix)
        add_user(self.layout, COLLECTOR, "collector", prefix=prefix)
        # 19 characters, as fleets have always had: every CONNECT carries it, and fleets count those bytes
        password = secrets.token_urlsafe(14)
        self.device_password.write_text(password + "\n")
        self.device_password.chmod(0o600)
        if self.device_ids:
            add_devices(self.layout, self.device_ids, password, prefix)
        prepare(self.layout, Listeners(tls_port=self.port, bind="127.0.0.1", dev_port=self.dev_port,
                                       operator_port=self.operator_port, operator_dev_port=self.operator_dev_port),
                prefix)

    @property
    def url(self) -> str:
        """The devices' TLS listener."""
        return f"mqtts://localhost:{self.port}"

    @property
    def dev_url(self) -> str:
        """The devices' plain loopback listener (same accounts and ACL)."""
        return f"mqtt://127.0.0.1:{self.dev_port}"

    @property
    def operator_url(self) -> str:
        """The publishers' TLS listener."""
        return f"mqtts://localhost:{self.operator_port}"

    @property
    def operator_dev_url(self) -> str:
        """The publishers' plain loopback listener."""
        return f"mqtt://127.0.0.1:{self.operator_dev_port}"

    def url_for(self, username: str, plain: bool = False) -> str:
        """The listener ``username`` logs in on: the operators' for the publisher and the collector, else the
        devices'."""
        if username in _OPERATORS:
            return self.operator_dev_url if plain else self.operator_url
        return self.dev_url if plain else self.url

    @property
    def device_password(self) -> Path:
        return self.layout.root / "device.password"

    @property
    def log(self) -> Path:
        return self.layout.root / "mosquitto.log"

    def password_file(self, username: str) -> Path:
        """The password file of ``username``: an operator's own, or the one all devices share."""
        return self.layout.credential(username) if username in _OPERATORS else self.device_password

    def login(self, username: str = PUBLISHER, password_file: Path | None = None,
              url: str | None = None) -> BrokerLogin:
        """``username``'s login over TLS on its listener (or ``url``); by default the publisher's, with its own
        password."""
        password_file = password_file or self.password_file(username)
        return BrokerLogin(BrokerUrl.parse(url or self.url_for(username)), username, password_file,
                           self.layout.ca_cert)

    def publisher(self, url: str | None = None, timeout: float = 30.0) -> BrokerSession:
        """A session as the publisher (over TLS on the operator listener unless ``url``); a context manager."""
        return BrokerSession(self.login(url=url), timeout=timeout)

    def publish(self, release: Release) -> None:
        """Publish ``release`` retained as the publisher; returns once the broker acknowledged every message."""
        with self.publisher() as session:
            publish_release(session, release, self.prefix)

    def usage(self) -> tuple[float, float]:
        """(CPU seconds, peak RSS MiB) of the Mosquitto process so far."""
        return process_usage(self.process.pid) if self.process else (0.0, 0.0)

    def start(self) -> Broker:
        """Start Mosquitto (again, after ``stop``) and return once every listener accepts connections."""
        raise_file_limit()  # Mosquitto inherits it: a fleet needs a descriptor per device
        self.process = start_broker(self.layout, self.log)
        for port in (self.port, self.dev_port, self.operator_port, self.operator_dev_port):
            wait_listening("127.0.0.1", port, self.process)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait: Mosquitto writes its database (the retained releases) and exits."""
        if self.process is not None:
            stop_process(self.process, timeout)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _fresh_directory(layout: BrokerLayout) -> None:
    """An empty ``layout.root``: an earlier broker's data directory is cleared, anything else is kept."""
    root = layout.root
    if root.exists() and any(root.iterdir()):
        if not layout.config.is_file():
            raise FileExistsError(f"{root} holds files that are not a broker's; give a broker a directory of its own")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
