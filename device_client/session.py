"""One MQTT connection of a Device (paho, MQTT 5): subscriptions follow the device, status goes out.

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

from codec.topics import status_topic
from device_client.device import Device
from device_client.status import DeviceStatus

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
        # The will describes the models running now; renew_needed() says when a commit made it stale.
        self._will_models = device.running_models()
        self.client.will_set(self._status_topic, device.status(online=False).to_json(), qos=_QOS, retain=True)
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

    def start(self) -> None:
        """Open the TCP (and TLS) connection and send CONNECT; raises OSError if the broker is unreachable."""
        url, keepalive = self.device.config.broker.url, self.device.config.broker.keepalive
        self.client.connect(url.host, url.port, keepalive=keepalive, clean_start=True)

    def service(self) -> None:
        """After network I/O: apply complete releases, follow the wanted topics, publish the status."""
        if not self.connected:
            return
        if self.device.has_work():
            self.publish_status(force=True)
            self.device.work()
        self._sync_subscriptions()
        again = sorted(self.device.resubscribe_due() & self._subscribed)
        if again:
            self.client.subscribe([(topic, _QOS) for topic in again])
        self.publish_status()

    def renew_needed(self) -> bool:
        """True once the running models differ from those in the registered last will."""
        return self.device.running_models() != self._will_models

    def publish_status(self, force: bool = False) -> mqtt.MQTTMessageInfo | None:
        """Publish the status if it changed: at once for news, progress at most every status_interval; and
        an unchanged one every heartbeat seconds, so readers can tell a silent device from a quiet one."""
        status, now = self.device.status(), time.monotonic()
        if status == self._last_status and now - self._last_status_time < self.device.config.client.heartbeat:
            return None
        news = self._last_status is None or replace(status, progress=None) != replace(self._last_status, progress=None)
        if not (force or news or now - self._last_status_time >= self.device.config.client.status_interval):
            return None
        self._last_status, self._last_status_time = status, now
        return self.client.publish(self._status_topic, status.to_json(), qos=_QOS, retain=True)

    def publish_offline(self) -> mqtt.MQTTMessageInfo:
        """What the will would say, sent on a clean shutdown (a clean disconnect discards the will)."""
        return self.client.publish(self._status_topic, self.device.status(online=False).to_json(), qos=_QOS,
                                   retain=True)

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
