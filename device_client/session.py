"""One MQTT connection of a Device (paho, MQTT 5): subscriptions follow the device, status goes out.

The last will is the device's presence ("offline" on its own topic), so it never goes stale: a commit needs
no reconnect. A status goes out when it says something new (a version, an error, a stall, the trust); a
download or an apply is reported once it has lasted ``status_interval``, and its progress at most that
often, so a small release costs one status: its outcome.

The session runs no loop of its own. `device_client.runner` drives it with ``client.loop()`` and
reconnects with backoff; a fleet simulator can drive many sessions with paho's external-loop calls
(``loop_read``/``loop_write``/``loop_misc``) and call ``service()`` after each round.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from codec.status_message import OFFLINE, ONLINE
from codec.topics import presence_topic, status_topic
from device_client.device import Device
from device_client.status import TRANSIENT_STATES, DeviceStatus

log = logging.getLogger("rankcast.device")
_QOS = 1


class DeviceSession:
    """A paho client bound to ``device``; create a new session for every connection attempt."""

    def __init__(self, device: Device) -> None:
        self.device = device
        broker = device.config.broker
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device.device_id, protocol=mqtt.MQTTv5)
        self.client.connect_timeout = device.config.client.connect_timeout
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password())
        if broker.url.tls:
            self.client.tls_set(ca_certs=str(broker.cafile) if broker.cafile else None)
        self._status_topic = status_topic(device.device_id, broker.prefix)
        self._presence_topic = presence_topic(device.device_id, broker.prefix)
        self.client.will_set(self._presence_topic, OFFLINE, qos=_QOS, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.connected = False
        #: True once the broker accepted this connection (it stays True after a disconnect).
        self.established = False
        self.ended = False
        self.refused: str | None = None
        self._subscribed: set[str] = set()
        self._last_status: DeviceStatus | None = None
        self._last_status_time = 0.0
        #: Since when the status has differed from the last one sent by progress or a transient state only.
        self._unsent_since: float | None = None

    def start(self) -> None:
        """Open the TCP (and TLS) connection and send CONNECT; raises OSError if the broker is unreachable."""
        url, keepalive = self.device.config.broker.url, self.device.config.broker.keepalive
        self.client.connect(url.host, url.port, keepalive=keepalive, clean_start=True)

    def service(self) -> None:
        """After network I/O: apply complete releases, follow the wanted topics, publish the status."""
        if not self.connected:
            return
        if self.device.has_work():
            if self.device.long_work():
                self.publish_status(force=True)
            self.device.work()
        self._sync_subscriptions()
        again = sorted(self.device.resubscribe_due() & self._subscribed)
        if again:
            self.client.subscribe([(topic, _QOS) for topic in again])
        self.publish_status()

    def publish_status(self, force: bool = False) -> mqtt.MQTTMessageInfo | None:
        """Publish the status if it says something new (at once), if only progress or a transient state
        changed and that has lasted status_interval, or unchanged every heartbeat seconds, so readers can
        tell a silent device from a quiet one; ``force``: now, whatever changed."""
        status, now, client = self.device.status(), time.monotonic(), self.device.config.client
        last = self._last_status
        if status == last and now - self._last_status_time < client.heartbeat:
            self._unsent_since = None
            return None
        if not force and last is not None and status != last and not _news(last, status):
            self._unsent_since = now if self._unsent_since is None else self._unsent_since
            if now - self._unsent_since < min(client.status_interval, client.heartbeat):
                return None
        self._last_status, self._last_status_time, self._unsent_since = status, now, None
        return self.client.publish(self._status_topic, status.to_json(), qos=_QOS, retain=True)

    def publish_offline(self) -> mqtt.MQTTMessageInfo:
        """What the will would say, sent on a clean shutdown (a clean disconnect discards the will)."""
        return self.client.publish(self._presence_topic, OFFLINE, qos=_QOS, retain=True)

    def _sync_subscriptions(self) -> None:
        wanted = self.device.wanted_topics()
        removed, added = self._subscribed - wanted, wanted - self._subscribed
        if removed:
            self.client.unsubscribe(sorted(removed))
        if added:
            self.client.subscribe([(topic, _QOS) for topic in sorted(added)])
            self.device.subscribed(added)
        self._subscribed = wanted

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            log.error("broker %s refused the connection: %s (check username and password_file)",
                      self.device.config.broker.url, reason)
            return
        log.info("connected to %s as %s", self.device.config.broker.url, self.device.device_id)
        self.connected = self.established = True
        self._subscribed = set()
        self._last_status = None
        self.client.publish(self._presence_topic, ONLINE, qos=_QOS, retain=True)
        self._sync_subscriptions()
        self.publish_status()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if self.connected:
            level = logging.WARNING if reason.is_failure else logging.INFO
            log.log(level, "disconnected from %s: %s", self.device.config.broker.url, reason)
        self.connected = False
        self.ended = True

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        self.device.handle(message.topic, message.payload)

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.error("the broker refused a subscription: %s (check the ACL for %s)", reason,
                          self.device.device_id)


def _news(last: DeviceStatus, status: DeviceStatus) -> bool:
    """Whether ``status`` says more than ``last`` besides progress and a move into or between transient
    states (a download or apply that started, or went on); the end of a reported download is news."""
    def settled(item: DeviceStatus) -> DeviceStatus:
        return replace(item, progress=None, state="idle" if item.state in TRANSIENT_STATES else item.state)

    ended = last.state in TRANSIENT_STATES and status.state not in TRANSIENT_STATES
    return ended or settled(last) != settled(status)
