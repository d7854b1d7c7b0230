"""The broker ACL matrix against the real Mosquitto (DESIGN §5, docs/mqtt.md "The broker").

Identities (publisher, device A, device B, anonymous, wrong password) × topic classes (a model's
manifest, a release's chunk, a trust root, the identity's own status, another device's status) × (read,
write), on each kind of listener (the devices' and the operators'), on a broker rendered by broker_config
exactly as `rankcast broker` renders it. Reads are checked by whether a retained message seeded on the
topic is delivered; writes by whether a watcher with read rights receives the message (Mosquitto drops a
denied publish silently for MQTT 3.1.1 and answers it with a reason code for MQTT 5). Each check is made
deterministic by a sentinel that must arrive after the message in question. On the device listeners a
client id is bound to the user name: device A connecting with device B's client id must leave B connected.

The probes are the testbed's MqttProbe (simulator.testbed.probe), one per identity.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from codec.topics import DEFAULT_PREFIX as PREFIX
from simulator.reliability.case import Case, Outcome
from simulator.testbed.broker import PUBLISHER, Broker
from simulator.testbed.probe import MqttProbe

WAIT_S = 10.0
MODEL = "acl-model"
IDENTITIES = ("publisher", "device-a", "device-b", "anonymous", "wrong-password")
TOPIC_CLASSES = ("manifest", "chunks", "trust-root", "own-status", "other-status")
ACCESS = ("read", "write")

_REFUSED = {c: (False, False) for c in TOPIC_CLASSES}
_PUBLISHER = {"manifest": (True, True), "chunks": (True, True), "trust-root": (True, True),
              "own-status": (True, True), "other-status": (True, False)}
_DEVICE = {"manifest": (True, False), "chunks": (True, False), "trust-root": (True, False),
           "own-status": (False, True), "other-status": (False, False)}
#: The designed matrix (DESIGN §5): listener kind -> identity -> topic class -> (may read, may write).
#: Devices read models/# and trust/# and write only devices/<own id>/# (they cannot even read their own
#: status); only the publisher writes models/# and trust/# and it reads every status; "own status" of the
#: publisher is devices/<publisher name>/status, which the %u pattern lets it write. Each kind of account
#: logs in on its own listeners only; anonymous clients and wrong passwords are refused at CONNECT
#: everywhere. A refused CONNECT denies every cell.
EXPECTED: dict[str, dict[str, dict[str, tuple[bool, bool]]]] = {
    "device": {"publisher": _REFUSED, "device-a": _DEVICE, "device-b": _DEVICE, "anonymous": _REFUSED,
               "wrong-password": _REFUSED},
    "operator": {"publisher": _PUBLISHER, "device-a": _REFUSED, "device-b": _REFUSED, "anonymous": _REFUSED,
                 "wrong-password": _REFUSED},
}


def _topics(identity: str, names: dict[str, str]) -> dict[str, str]:
    own = names.get(identity, names["publisher"])
    other = names["device-b"] if identity == "device-a" else names["device-a"]
    return {
        "manifest": f"{PREFIX}/models/{MODEL}/manifest",
        "chunks": f"{PREFIX}/models/{MODEL}/releases/1/chunks/0",
        "trust-root": f"{PREFIX}/trust/root/1",
        "own-status": f"{PREFIX}/devices/{own}/status",
        "other-status": f"{PREFIX}/devices/{other}/status",
    }


class AclMatrix:
    """Seeds retained messages (as the publisher, on ``operator_url``), then checks every cell on one listener
    (``url``); ``cells`` maps (identity, topic class, access) -> observed, ``notes`` what else was seen
    (refused CONNECTs)."""

    def __init__(self, broker: Broker, url: str, operator_url: str) -> None:
        self.broker, self.url, self.operator_url = broker, url, operator_url
        self.publisher_password = broker.login().password()
        self.device_password = broker.login(broker.device_ids[0]).password()
        self.names = {"publisher": PUBLISHER, "device-a": broker.device_ids[0], "device-b": broker.device_ids[1]}
        self.cells: dict[tuple[str, str, str], bool] = {}
        self.notes: list[str] = []

    def _probe(self, username: str | None, password: str | None, client_id: str | None = None,
               url: str | None = None) -> MqttProbe:
        return MqttProbe(url or self.url, username, password, client_id=client_id, cafile=self.broker.layout.ca_cert,
                         timeout=WAIT_S)

    def login(self, identity: str) -> tuple[str | None, str | None]:
        if identity == "anonymous":
            return None, None
        if identity == "wrong-password":
            return self.names["device-a"], "not-" + self.device_password
        password = self.publisher_password if identity == "publisher" else self.device_password
        return self.names[identity], password

    def run(self) -> dict[tuple[str, str, str], bool]:
        self._seed()
        with self._probe(PUBLISHER, self.publisher_password, url=self.operator_url) as watcher:
            for topic in (f"{PREFIX}/models/#", f"{PREFIX}/trust/#", f"{PREFIX}/devices/#"):
                watcher.subscribe(topic)
            time.sleep(0.3)  # the retained seeds arrive first
            for identity in IDENTITIES:
                self._identity(identity, watcher)
        return self.cells

    def _seed(self) -> None:
        """A retained message on each topic class, written by an identity that may write it."""
        with self._probe(*self.login("publisher"), url=self.operator_url) as publisher:
            publisher.publish(f"{PREFIX}/models/{MODEL}/manifest", b"seed-manifest", retain=True)
            publisher.publish(f"{PREFIX}/models/{MODEL}/releases/1/chunks/0", b"seed-chunk", retain=True)
            publisher.publish(f"{PREFIX}/trust/root/1", b"seed-root", retain=True)
            publisher.publish(f"{PREFIX}/devices/{PUBLISHER}/status", b"seed-status", retain=True)
        for identity in ("device-a", "device-b"):
            with self._probe(*self.login(identity), client_id=self.names[identity], url=self.broker.dev_url) as device:
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
        probe.unsubscribe(topic)
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


def mismatches(cells: dict[tuple[str, str, str], bool], kind: str) -> list[str]:
    """Every observed cell that differs from EXPECTED for a ``kind`` of listener, in words."""
    found = []
    for identity in IDENTITIES:
        for topic_class in TOPIC_CLASSES:
            for i, access in enumerate(ACCESS):
                want = EXPECTED[kind][identity][topic_class][i]
                got = cells.get((identity, topic_class, access))
                if got != want:
                    found.append(f"{identity} {access} {topic_class}: expected {'allowed' if want else 'denied'}, "
                                 f"got {got}")
    return found


def takeover_survived(broker: Broker, url: str) -> bool:
    """Whether device B stays connected while device A's credential connects with B's client id."""
    victim, attacker = broker.device_ids[1], broker.device_ids[0]
    password = broker.login(victim).password()
    with MqttProbe(url, victim, password, client_id=victim, cafile=broker.layout.ca_cert, timeout=WAIT_S) as probe:
        with MqttProbe(url, attacker, password, client_id=victim, cafile=broker.layout.ca_cert, timeout=WAIT_S):
            time.sleep(0.3)
        return probe.disconnects == 0


def _run(workdir: Path, quick: bool) -> Outcome:
    """Quick: the plain loopback listeners; full: those and the TLS ones (same passwords and ACL)."""
    observed: dict[str, dict[str, bool]] = {}
    problems: list[str] = []
    refused: dict[str, list[str]] = {}
    with Broker(workdir / "broker", [f"acl-dev-{c}" for c in "ab"]) as broker:
        listeners = {("device", "plain"): broker.dev_url, ("operator", "plain"): broker.operator_dev_url}
        if not quick:
            listeners |= {("device", "tls"): broker.url, ("operator", "tls"): broker.operator_url}
        for (kind, transport), url in listeners.items():
            name = f"{kind}-{transport}"
            matrix = AclMatrix(broker, url, broker.operator_dev_url)
            cells = matrix.run()
            observed[name] = {"/".join(cell): allowed for cell, allowed in cells.items()}
            problems += [f"{name}: {problem}" for problem in mismatches(cells, kind)]
            refused[name] = sorted(note.split(":")[0] for note in matrix.notes if "CONNECT refused" in note)
            if kind == "device" and not takeover_survived(broker, url):
                problems.append(f"{name}: device A's credential with device B's client id disconnected B")
    takeovers = sum(kind == "device" for kind, _ in listeners)
    runs = len(listeners) * len(IDENTITIES) * len(TOPIC_CLASSES) * len(ACCESS) + takeovers
    detail = (f"{len(listeners)} listeners ({', '.join('-'.join(key) for key in listeners)}), {len(IDENTITIES)} "
              f"identities x {len(TOPIC_CLASSES)} topic classes x read/write, and a client-id takeover per device "
              f"listener, on Mosquitto; {runs - len(problems)}/{runs} checks as designed")
    facts = {"observed": observed, "mismatches": problems, "refused_connect": refused}
    return Outcome("acl-matrix", runs, runs - len(problems), detail, facts, tuple(problems))


CASES = [Case("acl-matrix", "security", _run)]
