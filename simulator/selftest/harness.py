"""Shared machinery of the self-test cases: a real broker, real device processes, releases, bounded waits.

    with SelftestBroker(workdir / "broker", devices=2) as broker:
        key, public = make_keypair(workdir / "keys")
        config = make_device_config(workdir / "dev", broker, broker.device_ids[0], "digits", public)
        install_model(config, "digits", model_bytes, version=1)
        device = start_device_process(config)
        publish_release(broker, full_release(new_bytes, model="digits", version=2, key=key, lifetime_s=DAY))
        wait_for(lambda: installed_version(config, "digits") == 2, 30, "release 2 committed")
        stop_process(device)

SelftestBroker sets Mosquitto up exactly as `rankcast broker` does (broker_config: test CA, password file,
the shipped ACL and mosquitto.conf with persistence) on free loopback ports: TLS on ``port`` and the plain
loopback development listener on ``dev_port`` (same accounts and ACL). Devices are `python -m rankcast
device run` child processes. Every wait here is bounded in time; nothing talks to the system broker.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

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
from codec.apply import apply_payload
from codec.apply import file_sha256 as codec_file_sha256
from codec.keys import SigningKey, generate_signing_key, write_keypair
from codec.payload import encode_payload
from codec.release import Release
from codec.topics import DEFAULT_PREFIX, BrokerUrl
from codec.update_file import UpdateFile
from codec.weights import encode_weights, read_slots
from device_client.store import FileModelStore
from publisher.mqtt import BrokerLogin, BrokerSession
from publisher.release_build import full_release, update_release
from publisher.release_ops import publish_release as _publish
from simulator.codec_bench import synthetic_update

PUBLISHER = "selftest-publisher"
DAY = 86400
#: The repository root: device processes run with it as their working directory and on PYTHONPATH.
ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float, what: str = "a condition", poll: float = 0.02):
    """Poll ``predicate`` until it returns something true (returned); TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


class SelftestBroker:
    """Mosquitto with the project's configuration as a child process; a context manager.

    Accounts: a publisher (``PUBLISHER``) and ``devices`` device ids sharing one password
    (``device_password`` names the file). ``stop()`` sends SIGTERM (Mosquitto saves its persistence
    database), ``start()`` starts it again on the same data directory and ports.
    """

    def __init__(self, root: Path, devices: int = 1, dev_listener: bool = True) -> None:
        self.layout = BrokerLayout(Path(root))
        self.port = free_port()
        self.dev_port = free_port() if dev_listener else None
        self.device_ids = [f"st-{uuid.uuid4().hex[:6]}-{i:02d}" for i in range(devices)]
        self.process: subprocess.Popen | None = None
        make_test_ca(self.layout)
        add_user(self.layout, PUBLISHER, "publisher")
        password = uuid.uuid4().hex
        for device_id in self.device_ids:
            add_user(self.layout, device_id, "device", password)
        self.device_password.write_text(password + "\n")
        self.device_password.chmod(0o600)
        prepare(self.layout, Listeners(tls_port=self.port, bind="127.0.0.1", dev_port=self.dev_port))

    @property
    def url(self) -> str:
        """The TLS listener."""
        return f"mqtts://localhost:{self.port}"

    @property
    def dev_url(self) -> str:
        """The plain loopback listener (same accounts and ACL), for relays that read the MQTT stream."""
        return f"mqtt://127.0.0.1:{self.dev_port}"

    @property
    def device_password(self) -> Path:
        return self.layout.root / "device.password"

    @property
    def log(self) -> Path:
        return self.layout.root / "mosquitto.log"

    def login(self, username: str = PUBLISHER, password_file: Path | None = None,
              url: str | None = None) -> BrokerLogin:
        """``username``'s login over TLS (or ``url``); by default the publisher's. ``password_file``
        defaults to the one add_user wrote for ``username`` (devices share ``device_password``)."""
        return BrokerLogin(BrokerUrl.parse(url or self.url), username,
                           password_file or self.layout.credential(username), self.layout.ca_cert)

    def publisher(self) -> BrokerSession:
        """A session as the publisher over TLS; a context manager."""
        return BrokerSession(self.login(), timeout=30.0)

    def start(self) -> None:
        self.process = start_broker(self.layout, self.log)
        wait_listening("127.0.0.1", self.port, self.process)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait: Mosquitto writes its database (the retained releases) and exits."""
        if self.process is not None:
            stop_process(self.process, timeout)

    def __enter__(self) -> SelftestBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def publish_release(broker: SelftestBroker, release: Release, prefix: str = DEFAULT_PREFIX) -> None:
    """Publish ``release`` retained as the publisher; returns once the broker acknowledged every message."""
    with broker.publisher() as session:
        _publish(session, release, prefix)


def make_model(seed: int, shapes: dict[str, tuple[int, ...]]) -> bytes:
    """An RCW model file of random float32 tensors (random weights do not compress)."""
    rng = np.random.default_rng(seed)
    return encode_weights({name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()})


def make_full_release(model_file: bytes, model: str, version: int, key: SigningKey,
                      chunk_size: int = 32 * 1024) -> Release:
    """A signed release carrying the whole of ``model_file``."""
    return full_release(model_file, model=model, version=version, key=key, chunk_size=chunk_size, lifetime_s=DAY)


def make_delta_release(base: Path, seed: int, model: str, version: int, key: SigningKey,
                       base_version: int | None = None, rank: int = 4) -> tuple[Release, str]:
    """A signed delta release for the model file at ``base`` (rank-``rank`` factors for matrices, int8
    deltas for vectors) and the sha256 hex of the file it makes. Small payload, however big the base."""
    data = Path(base).read_bytes()
    shapes = {name: slot.shape for name, slot in read_slots(data).items()}
    payload, length = encode_payload(synthetic_update(shapes, rank, seed, factor_scale=0.1))
    base_sha256 = hashlib.sha256(data).digest()
    scratch = Path(base).with_name(f".target-{uuid.uuid4().hex[:6]}")
    try:
        scratch.write_bytes(data)
        del data
        target = apply_payload(scratch, payload, length)
    finally:
        scratch.unlink(missing_ok=True)
    update = UpdateFile(payload, length, "delta", base_sha256, target)
    release = update_release(update, model=model, version=version, key=key, base_version=base_version,
                             lifetime_s=DAY)
    return release, target.hex()


def make_keypair(directory: Path) -> tuple[SigningKey, Path]:
    """A fresh signing key and the path of its public key file (for trusted_keys)."""
    key = generate_signing_key()
    _, public = write_keypair(Path(directory), key)
    return key, public


def make_device_config(home: Path, broker: SelftestBroker, device_id: str, models: str | list[str],
                       trusted_key: Path, url: str | None = None, window: int = 8) -> Path:
    """HOME/device.toml (models in HOME/models) with quick reconnects and status updates; ``url``
    overrides the broker's TLS URL (e.g. a relay in front of ``dev_url``)."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    names = [models] if isinstance(models, str) else list(models)
    tls = (url or broker.url).startswith("mqtts:")
    config = home / "device.toml"
    config.write_text(
        f'device_id = "{device_id}"\nmodel_dir = "models"\ntrusted_keys = ["{trusted_key}"]\n'
        f"models = {json.dumps(names)}\n\n[broker]\nurl = \"{url or broker.url}\"\n"
        f'password_file = "{broker.device_password}"\n'
        + (f'cafile = "{broker.layout.ca_cert}"\n' if tls else "")
        + f"\n[client]\nchunk_window = {window}\nbackoff_initial = 0.05\nbackoff_max = 0.5\n"
        "status_interval = 0.2\nconnect_timeout = 5\n"
    )
    return config


def model_dir(config: Path) -> Path:
    return Path(config).parent / "models"


def install_model(config: Path, model: str, data: bytes, version: int) -> None:
    """Register ``data`` as the running ``model`` at ``version`` (what `rankcast device install` does)."""
    source = Path(config).parent / f".install-{model}"
    source.write_bytes(data)
    FileModelStore(model_dir(config)).install(model, source, version)
    source.unlink()


def start_device_process(config: Path, log: Path | None = None,
                         preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen:
    """`python -m rankcast device run --config CONFIG` as a child, output appended to ``log``
    (default: device.log beside the config). ``preexec_fn`` runs in the child before exec (limits)."""
    log = log or Path(config).parent / "device.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "rankcast", "device", "run", "--config", str(config)],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
            preexec_fn=preexec_fn,
        )


def store_state(config: Path, model: str) -> tuple[int | None, str | None, str | None]:
    """(version state.json names, its sha256 hex, sha256 hex of the running file's bytes), read without
    recovery; use after the device process is gone."""
    directory = model_dir(config) / model
    state_path = directory / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    current = state.get("current") or {}
    running = directory / f"model{current.get('suffix', '.rcw')}"
    return current.get("version"), current.get("sha256"), file_sha256(running) if running.exists() else None


def installed(config: Path, model: str) -> tuple[int, str] | None:
    """(version, sha256 hex) of the running model after FileModelStore's crash recovery, or None."""
    found = FileModelStore(model_dir(config)).current(model)
    return (found.version, found.sha256.hex()) if found else None


def file_sha256(path: Path) -> str:
    """The file's sha256 as hex (codec.apply.file_sha256 gives the digest bytes)."""
    return codec_file_sha256(path).hex()


def spooled(config: Path, model: str) -> set[int]:
    """Indices of the chunks the device holds in its spool right now."""
    spool = model_dir(config) / ".spool" / model
    return {int(p.name) for p in spool.glob("*/chunks/*") if p.name.isdigit()}


class StatusWatcher:
    """Reads every device's retained status topic as the publisher (TLS); a context manager.

    ``latest[device]`` is the last status (a dict); ``seen`` counts status messages, so a caller can
    wait for news after a point: ``mark = watcher.seen; watcher.wait(lambda s: ..., after=mark)``.
    """

    def __init__(self, broker: SelftestBroker, prefix: str = DEFAULT_PREFIX) -> None:
        self.latest: dict[str, dict] = {}
        self.history: list[tuple[int, str, dict]] = []
        self.seen = 0
        self._lock = threading.Lock()
        self._filter = f"{prefix}/devices/+/status"
        login = broker.login()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"selftest-watch-{uuid.uuid4().hex[:6]}",
                                   protocol=mqtt.MQTTv5)
        self._client.username_pw_set(login.username, login.password())
        self._client.tls_set(ca_certs=str(login.cafile))
        self._client.on_connect = lambda client, *_: client.subscribe(self._filter, qos=1)
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.05, 0.5)
        self._client.connect_async(login.url.host, login.url.port, keepalive=30)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            status = json.loads(message.payload)
        except ValueError:
            return
        with self._lock:
            self.seen += 1
            self.latest[status.get("device", "")] = status
            self.history.append((self.seen, status.get("device", ""), status))
            del self.history[:-2000]

    def wait(self, predicate: Callable[[dict], bool], device: str, timeout: float, what: str,
             after: int = 0) -> dict:
        """The first status of ``device`` numbered above ``after`` that satisfies ``predicate``."""
        def found() -> dict | None:
            with self._lock:
                return next((s for n, d, s in self.history if n > after and d == device and predicate(s)), None)
        return wait_for(found, timeout, what, poll=0.005)

    def __enter__(self) -> StatusWatcher:
        self._client.loop_start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Relay:
    """A TCP relay to ``target_port`` on loopback that throttles the broker-to-device direction to
    ``rate`` bytes per second. With ``count_publishes`` (plain MQTT only, e.g. to ``dev_port``) it
    counts, per topic, the PUBLISH packets it forwarded to the devices (``published``)."""

    def __init__(self, target_port: int, rate: float | None = None, count_publishes: bool = False) -> None:
        self.target_port, self.rate, self.count_publishes = target_port, rate, count_publishes
        self.published: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._links: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, tls: bool = False) -> str:
        return f"{'mqtts://localhost' if tls else 'mqtt://127.0.0.1'}:{self.port}"

    def cut(self) -> None:
        """Drop every open link, as a failing radio would; new connections are still relayed."""
        with self._lock:
            links, self._links = self._links, []
        for sock in links:
            _shut(sock)
            sock.close()

    def close(self) -> None:
        self._server.close()
        self.cut()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                device, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                device.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._links += [device, upstream]
            threading.Thread(target=self._pump, args=(device, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, device, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        parser = _PublishCounter(self) if downstream and self.count_publishes else None
        try:
            while data := source.recv(4096):
                sink.sendall(data)
                if parser is not None:
                    parser.feed(data)
                if downstream and self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        _shut(source)
        _shut(sink)


class _PublishCounter:
    """Splits an MQTT byte stream into packets and counts the topics of PUBLISH packets."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            length, used = 0, 0
            for shift in range(4):
                if 1 + used >= len(self.buffer):
                    return
                byte = self.buffer[1 + used]
                used += 1
                length |= (byte & 0x7F) << (7 * shift)
                if not byte & 0x80:
                    break
            end = 1 + used + length
            if end > len(self.buffer):
                return
            if self.buffer[0] >> 4 == 3:  # PUBLISH: topic length (2 bytes) and topic lead the variable header
                start = 1 + used
                size = int.from_bytes(self.buffer[start:start + 2], "big")
                topic = bytes(self.buffer[start + 2:start + 2 + size]).decode("utf-8", "replace")
                with self.relay._lock:
                    self.relay.published[topic] = self.relay.published.get(topic, 0) + 1
            del self.buffer[:end]


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
