"""The broker ACL matrix against the real Mosquitto (DESIGN §5, docs/mqtt.md "The broker").

Identities (publisher, device A, device B, anonymous, wrong password) × topic classes (a model's
manifest, a release's chunk, the identity's own status, another device's status) × (read, write), on a
broker rendered by broker_config exactly as `rankcast broker` renders it. Reads are checked by whether a
retained message seeded on the topic is delivered; writes by whether a watcher with read rights receives
the message (Mosquitto drops a denied publish silently for MQTT 3.1.1 and answers it with a reason code
for MQTT 5). Each check is made deterministic by a sentinel that must arrive after the message in question.

``MqttProbe`` is a small blocking MQTT 5 client (bounded waits) that simulator.selftest.hostile reuses.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulator.fleet import PREFIX, PUBLISHER, SimBroker
from simulator.selftest.case import Case, Outcome

WAIT_S = 10.0
MODEL = "acl-model"
IDENTITIES = ("publisher", "device-a", "device-b", "anonymous", "wrong-password")
TOPIC_CLASSES = ("manifest", "chunks", "own-status", "other-status")
ACCESS = ("read", "write")

#: The designed matrix (DESIGN §5): identity -> topic class -> (may read, may write).
#: Devices read models/# and write only devices/<own id>/# (they cannot even read their own status);
#: only the publisher writes models/# and it reads every status; "own status" of the publisher is
#: devices/<publisher name>/status, which the %u pattern lets it write. Anonymous clients and wrong
#: passwords are refused at CONNECT, so every cell is denied.
EXPECTED: dict[str, dict[str, tuple[bool, bool]]] = {
    "publisher": {"manifest": (True, True), "chunks": (True, True), "own-status": (True, True),
                  "other-status": (True, False)},
    "device-a": {"manifest": (True, False), "chunks": (True, False), "own-status": (False, True),
                 "other-status": (False, False)},
    "device-b": {"manifest": (True, False), "chunks": (True, False), "own-status": (False, True),
                 "other-status": (False, False)},
    "anonymous": {c: (False, False) for c in TOPIC_CLASSES},
    "wrong-password": {c: (False, False) for c in TOPIC_CLASSES},
}


class ProbeError(RuntimeError):
    """The probe could not connect or a bounded wait expired."""


class MqttProbe:
    """One MQTT 5 connection (paho's loop thread) that records every message it receives."""

    def __init__(self, port: int, username: str | None, password: str | None, timeout: float = WAIT_S,
                 client_id: str | None = None, cafile: Path | None = None) -> None:
        self.timeout = timeout
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:10]}",
                                  protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if cafile is not None:
            self.client.tls_set(ca_certs=str(cafile))
        self._cond = threading.Condition()
        self.connack = None
        self.messages: list[tuple[str, bytes, bool]] = []
        self.latest: dict[str, bytes] = {}
        self._subacks: dict[int, list] = {}
        self._pubacks: dict[int, object] = {}
        self.lost = False
        self.client.on_connect = lambda c, u, f, reason, p: self._set(lambda: setattr(self, "connack", reason))
        self.client.on_disconnect = lambda c, u, f, reason, p: self._set(lambda: setattr(self, "lost", True))
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._set(lambda: self._subacks.__setitem__(mid, codes))
        self.client.on_publish = lambda c, u, mid, code, p: self._set(lambda: self._pubacks.__setitem__(mid, code))
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30, clean_start=True)
        self.client.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def _set(self, update: Callable[[], None]) -> None:
        with self._cond:
            update()
            self._cond.notify_all()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        def update() -> None:
            self.messages.append((message.topic, message.payload, bool(message.retain)))
            self.latest[message.topic] = message.payload
        self._set(update)

    def wait(self, condition: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProbeError(f"no {what} within {timeout or self.timeout:.0f} s")
                self._cond.wait(min(remaining, 0.2))

    def subscribe(self, topic: str, qos: int = 1) -> list:
        """Subscribe and wait for the SUBACK; returns its reason codes."""
        _, mid = self.client.subscribe(topic, qos)
        self.wait(lambda: mid in self._subacks, f"SUBACK for {topic}")
        return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> object:
        """Publish at QoS 1 and wait for the PUBACK; returns its reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self.wait(lambda: info.mid in self._pubacks, f"PUBACK for {topic}")
        return self._pubacks.pop(info.mid)

    def received(self, topic: str, payload: bytes) -> bool:
        with self._cond:
            return any(t == topic and p == payload for t, p, _ in self.messages)

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def __enter__(self) -> MqttProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _topics(identity: str, names: dict[str, str]) -> dict[str, str]:
    own = names.get(identity, names["publisher"])
    other = names["device-b"] if identity == "device-a" else names["device-a"]
    return {
        "manifest": f"{PREFIX}/models/{MODEL}/manifest",
        "chunks": f"{PREFIX}/models/{MODEL}/releases/1/chunks/0",
        "own-status": f"{PREFIX}/devices/{own}/status",
        "other-status": f"{PREFIX}/devices/{other}/status",
    }


class AclMatrix:
    """Seeds retained messages, then checks every cell on one listener; ``cells`` maps cell -> observed."""

    def __init__(self, broker: SimBroker, port: int, cafile: Path | None = None) -> None:
        self.broker, self.port, self.cafile = broker, port, cafile
        self.publisher_password = broker.layout.credential(PUBLISHER).read_text().splitlines()[0]
        self.device_password = broker.device_password.read_text().splitlines()[0]
        self.names = {"publisher": PUBLISHER, "device-a": broker.devices[0], "device-b": broker.devices[1]}
        self.cells: dict[tuple[str, str, str], bool] = {}
        self.notes: list[str] = []

    def _probe(self, username: str | None, password: str | None, client_id: str | None = None) -> MqttProbe:
        return MqttProbe(self.port, username, password, client_id=client_id, cafile=self.cafile)

    def login(self, identity: str) -> tuple[str | None, str | None]:
        if identity == "anonymous":
            return None, None
        if identity == "wrong-password":
            return self.names["device-a"], "not-" + self.device_password
        password = self.publisher_password if identity == "publisher" else self.device_password
        return self.names[identity], password

    def run(self) -> dict[tuple[str, str, str], bool]:
        self._seed()
        with self._probe(PUBLISHER, self.publisher_password) as watcher:
            for topic in (f"{PREFIX}/models/#", f"{PREFIX}/devices/#"):
                watcher.subscribe(topic)
            time.sleep(0.3)  # the retained seeds arrive first
            for identity in IDENTITIES:
                self._identity(identity, watcher)
        return self.cells

    def _seed(self) -> None:
        """A retained message on each topic class, written by an identity that may write it."""
        with self._probe(*self.login("publisher")) as publisher:
            publisher.publish(f"{PREFIX}/models/{MODEL}/manifest", b"seed-manifest", retain=True)
            publisher.publish(f"{PREFIX}/models/{MODEL}/releases/1/chunks/0", b"seed-chunk", retain=True)
            publisher.publish(f"{PREFIX}/devices/{PUBLISHER}/status", b"seed-status", retain=True)
        for identity in ("device-a", "device-b"):
            with self._probe(*self.login(identity), client_id=self.names[identity]) as device:
                device.publish(f"{PREFIX}/devices/{self.names[identity]}/status", b"seed-status", retain=True)

    def _identity(self, identity: str, watcher: MqttProbe) -> None:
        username, password = self.login(identity)
        client_id = self.names.get(identity) if identity in ("device-a", "device-b") else None
        probe = self._probe(username, password, client_id=client_id)
        try:
            if not probe.accepted:
                self.notes.append(f"{identity}: CONNECT refused ({probe.connack})")
                for topic_class in TOPIC_CLASSES:
                    for access in ACCESS:
                        self.cells[identity, topic_class, access] = False
                return
            for topic_class, topic in _topics(identity, self.names).items():
                self.cells[identity, topic_class, "read"] = self._can_read(probe, topic)
                self.cells[identity, topic_class, "write"] = self._can_write(probe, topic, watcher)
        finally:
            probe.close()

    def _can_read(self, probe: MqttProbe, topic: str) -> bool:
        """Subscribe; the retained seed arrives before the SUBACK of a later sentinel subscription."""
        reasons = probe.subscribe(topic)
        probe.subscribe(f"{PREFIX}/models/.sync-{secrets.token_hex(4)}")
        time.sleep(0.05)
        got = any(t == topic for t, _, retained in probe.messages if retained)
        if reasons and reasons[0].is_failure and got:
            self.notes.append(f"{topic}: refused SUBACK but delivered")
        probe.client.unsubscribe(topic)
        return got

    def _can_write(self, probe: MqttProbe, topic: str, watcher: MqttProbe) -> bool:
        """Publish (not retained, so the seeds stay); a sentinel from the watcher follows it."""
        payload = f"write-{secrets.token_hex(6)}".encode()
        probe.publish(topic, payload)
        sentinel_topic = f"{PREFIX}/devices/{PUBLISHER}/sentinel"
        sentinel = secrets.token_hex(6).encode()
        watcher.publish(sentinel_topic, sentinel)
        watcher.wait(lambda: watcher.received(sentinel_topic, sentinel), "the sentinel")
        time.sleep(0.02)
        return watcher.received(topic, payload)


def check_matrix(broker: SimBroker, port: int, cafile: Path | None = None) -> tuple[int, int, list[str]]:
    """(cells, matching cells, mismatches and notes) for one listener (TLS with ``cafile``)."""
    matrix = AclMatrix(broker, port, cafile)
    observed = matrix.run()
    mismatches = []
    for identity in IDENTITIES:
        for topic_class in TOPIC_CLASSES:
            for i, access in enumerate(ACCESS):
                want = EXPECTED[identity][topic_class][i]
                got = observed.get((identity, topic_class, access))
                if got != want:
                    mismatches.append(f"{identity} {access} {topic_class}: expected "
                                      f"{'allowed' if want else 'denied'}, got {got}")
    cells = len(IDENTITIES) * len(TOPIC_CLASSES) * len(ACCESS)
    return cells, cells - len(mismatches), mismatches + matrix.notes


def _run(workdir: Path, quick: bool) -> Outcome:
    """Quick: the plain loopback listener; full: that and the TLS listener (same passwords and ACL)."""
    ids = [f"acl-dev-{c}" for c in "ab"]
    with SimBroker(workdir / "broker", ids) as broker:
        listeners = [("plain", broker.dev_port, None)]
        if not quick:
            listeners.append(("tls", broker.port, broker.layout.ca_cert))
        runs = held = 0
        problems: list[str] = []
        for name, port, cafile in listeners:
            cells, ok, notes = check_matrix(broker, port, cafile)
            runs, held = runs + cells, held + ok
            problems += [f"{name}: {n}" for n in notes if "expected" in n]
    names = "+".join(name for name, _, _ in listeners)
    detail = (f"{names} listener{'s' if len(listeners) > 1 else ''}, {len(IDENTITIES)} identities x "
              f"{len(TOPIC_CLASSES)} topic classes x read/write on Mosquitto; "
              f"{held}/{runs} cells as designed")
    if problems:
        detail += "; " + "; ".join(problems[:4])
    return Outcome("acl-matrix", runs, held, detail)


CASES = [Case("acl-matrix", "security", _run)]
