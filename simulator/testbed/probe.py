"""An MQTT 5 client that records every message it receives, for watching devices and probing the broker.

    with broker_probe(broker) as probe:                # the publisher's login over TLS
        probe.subscribe(status_filter())
        mark = probe.seen
        ...                                            # publish a release
        probe.wait_status(device_id, lambda s: s["state"] == "idle", "the release applied", after=mark)

Statuses are read from each device's own status topic (the topic names the device, not the JSON), as
readers see them (codec.status_message.read_status): every key present, and "offline" when the device's
presence says so; subscribing to a status topic or filter follows the presence beside it too.
Subscriptions are made again after a reconnect, so a probe outlives a broker restart. Every wait is
bounded and raises ProbeTimeout (a TimeoutError) naming what it waited for.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from codec.status_message import read_status
from codec.topics import DEFAULT_PREFIX, BrokerUrl, presence_beside, presence_topic, status_topic
from simulator.testbed.broker import Broker
from simulator.testbed.waits import WAIT_S


class ProbeTimeout(TimeoutError):
    """A bounded wait of the probe expired."""


class MqttProbe:
    """One MQTT 5 connection (paho's loop thread) that records every message it receives, in order.

    ``messages[n - 1]`` is the n-th message (topic, payload, retained); ``seen`` counts them, so a caller
    can wait for news after a point. ``accepted`` tells whether the broker accepted the CONNECT, and
    ``disconnects`` counts the connections lost (the probe reconnects by itself).
    """

    def __init__(self, url: str, username: str | None = None, password: str | None = None, *,
                 cafile: Path | None = None, client_id: str | None = None, timeout: float = WAIT_S,
                 prefix: str = DEFAULT_PREFIX) -> None:
        self.timeout, self.prefix = timeout, prefix
        broker = BrokerUrl.parse(url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:10]}",
                                  protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if broker.tls:
            self.client.tls_set(ca_certs=str(cafile) if cafile else None)
        self._changed = threading.Condition()
        self.connack: ReasonCode | None = None
        self.messages: list[tuple[str, bytes, bool]] = []
        self._filters: dict[str, int] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._resubscriptions: set[int] = set()  # SUBACKs nobody waits for
        self._pubacks: dict[int, ReasonCode] = {}
        self.disconnects = 0
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self._notify(lambda: setattr(self, "disconnects", self.disconnects + 1))
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = lambda c, u, mid, code, p: self._notify(lambda: self._pubacks.update({mid: code}))
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect(broker.host, broker.port, keepalive=30, clean_start=True)
        self.client.loop_start()
        try:
            self.wait(lambda: self.connack is not None, "CONNACK")
        except BaseException:
            self.close()
            raise

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    @property
    def seen(self) -> int:
        with self._changed:
            return len(self.messages)

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        """Subscribe (again after every reconnect) and wait for the SUBACK; returns its reason codes (a status
        topic or filter: those of it and of the presence beside it)."""
        topics = _followed(topic)
        self._filters.update({t: qos for t in topics})
        _, mid = self.client.subscribe([(t, qos) for t in topics])
        self.wait(lambda: mid in self._subacks, f"SUBACK for {topic}")
        with self._changed:
            return self._subacks.pop(mid)

    def unsubscribe(self, topic: str) -> None:
        topics = _followed(topic)
        for name in topics:
            self._filters.pop(name, None)
        self.client.unsubscribe(topics)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and wait for the PUBACK; returns its reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self.wait(lambda: info.mid in self._pubacks, f"PUBACK for {topic}")
        with self._changed:
            return self._pubacks.pop(info.mid)

    def latest(self, topic: str) -> bytes | None:
        """The last payload received on ``topic``."""
        with self._changed:
            return next((payload for t, payload, _ in reversed(self.messages) if t == topic), None)

    def received(self, topic: str, payload: bytes) -> bool:
        with self._changed:
            return any(t == topic and p == payload for t, p, _ in self.messages)

    def status(self, device_id: str) -> dict:
        """The device's latest status as a reader sees it ({} before its first, or when it is not JSON)."""
        return _parse(self.latest(status_topic(device_id, self.prefix)),
                      self.latest(presence_topic(device_id, self.prefix))) or {}

    def statuses(self, device_id: str, after: int = 0) -> list[dict]:
        """Every status of ``device_id`` among the messages numbered above ``after``, as a reader saw it then
        (with the presence seen before it); a presence message makes one too (the status before it, online
        or offline)."""
        topic, presence = status_topic(device_id, self.prefix), presence_topic(device_id, self.prefix)
        seen: list[dict] = []
        last: bytes | None = None
        present: bytes | None = None
        with self._changed:
            messages = list(self.messages)
        for number, (t, payload, _) in enumerate(messages, 1):
            if t == topic:
                last = payload
            elif t == presence:
                present = payload
            if t in (topic, presence) and number > after:
                status = _parse(last, present) if last is not None else None
                if status is not None:
                    seen.append(status)
        return seen

    def wait_status(self, device_id: str, predicate: Callable[[dict], bool], what: str, timeout: float | None = None,
                    after: int = 0) -> dict:
        """The first status of ``device_id`` among the messages numbered above ``after`` that satisfies
        ``predicate`` (the probe must be subscribed to it)."""
        found: list[dict] = []

        def arrived() -> bool:
            found[:] = [status for status in self.statuses(device_id, after) if predicate(status)][:1]
            return bool(found)

        self.wait(arrived, what, timeout)
        return found[0]

    def wait(self, condition: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        """Return once ``condition()`` holds (checked whenever something arrives); ProbeTimeout otherwise."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProbeTimeout(f"no {what} within {limit:.0f} s")
                self._changed.wait(min(remaining, 0.2))

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def __enter__(self) -> MqttProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _notify(self, update: Callable[[], None]) -> None:
        with self._changed:
            update()
            self._changed.notify_all()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self._notify(lambda: setattr(self, "connack", reason))
        if not reason.is_failure and self._filters:
            _, mid = client.subscribe(list(self._filters.items()))
            self._resubscriptions.add(mid)

    def _on_subscribe(self, client, userdata, mid, codes, properties) -> None:
        if mid in self._resubscriptions:
            self._resubscriptions.discard(mid)
        else:
            self._notify(lambda: self._subacks.update({mid: codes}))

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        self._notify(lambda: self.messages.append((message.topic, message.payload, bool(message.retain))))


def broker_probe(broker: Broker, username: str | None = None, *, url: str | None = None,
                 timeout: float = WAIT_S) -> MqttProbe:
    """A probe logged in to a testbed ``broker`` as ``username`` (default: the publisher), over TLS on its
    listener unless ``url`` names another."""
    login = broker.login(username) if username else broker.login()
    return MqttProbe(url or str(login.url), login.username, login.password(), cafile=broker.layout.ca_cert,
                     timeout=timeout, prefix=broker.prefix)


def _parse(payload: bytes | None, presence: bytes | None = None) -> dict | None:
    try:
        return read_status(payload, presence) if payload else None
    except ValueError:
        return None


def _followed(topic: str) -> list[str]:
    """What subscribing to ``topic`` follows: a status topic or filter with its presence, the presence first
    (its retained message then comes before the status it qualifies)."""
    return [presence_beside(topic), topic] if topic.endswith("/status") else [topic]
