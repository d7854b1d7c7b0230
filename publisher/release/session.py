"""A blocking MQTT 5 session for tools: publish with every acknowledgement checked, read retained state.

Used by `rankcast publish`, `release`, `status`, `rollout` and `dashboard` (which follows topics live). Every
wait is bounded by the session's timeout and ends early if the connection drops; broker refusals become
PublishError subclasses with stable codes (bad-credentials, not-authorized, broker-refused, timeout, ...), and a
connection that fails says why (publisher.release.broker_errors).
"""

from __future__ import annotations

import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from codec.topics import BrokerUrl, read_password_file
from publisher.errors import (
    BrokerRefusedError,
    BrokerTimeoutError,
    BrokerUnreachableError,
    CredentialsRefusedError,
    NotAuthorizedError,
)
from publisher.release.broker_errors import cafile_error, connect_error, lost_before_connack

_BAD_CREDENTIALS = 0x86
_NOT_AUTHORIZED = 0x87
_SETTLE_S = 0.2


@dataclass(frozen=True)
class BrokerLogin:
    """Where the broker is and who we are; the password is read from a file, never the command line."""

    url: BrokerUrl
    username: str | None = None
    password_file: Path | None = None
    cafile: Path | None = None

    def password(self) -> str | None:
        return read_password_file(self.password_file)


class BrokerSession:
    """One connection; use as a context manager (the exit sends a clean DISCONNECT)."""

    def __init__(self, login: BrokerLogin, timeout: float = 30.0) -> None:
        self.login = login
        self.timeout = timeout
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"rankcast-tool-{secrets.token_hex(6)}", protocol=mqtt.MQTTv5
        )
        if login.username is not None:
            self._client.username_pw_set(login.username, login.password())
        if login.url.tls:
            try:
                self._client.tls_set(ca_certs=str(login.cafile) if login.cafile else None)
            except (OSError, ssl.SSLError) as exc:
                raise cafile_error(login.cafile, exc) from None
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._changed = threading.Condition()
        self._connack: ReasonCode | None = None
        self._lost: str | None = None
        self._acks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._retained: dict[str, bytes] | None = None
        self._follower: Callable[[str, bytes], None] | None = None

    def __enter__(self) -> BrokerSession:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect and wait for the broker's answer; raises BrokerUnreachableError or CredentialsRefusedError."""
        url = self.login.url
        self._client.connect_timeout = self.timeout
        try:
            self._client.connect(url.host, url.port, keepalive=60, clean_start=True)
        except (OSError, ssl.SSLError) as exc:
            raise connect_error(url, self.login.cafile, exc) from None
        self._client.loop_start()
        try:
            self._wait(lambda: self._connack is not None, "the broker's answer to CONNECT")
        except BrokerUnreachableError:
            self.close()
            raise lost_before_connack(url, self._lost, self.timeout) from None
        if self._connack.is_failure:
            self.close()
            if self._connack.value in (_BAD_CREDENTIALS, _NOT_AUTHORIZED) and self.login.username is None:
                raise CredentialsRefusedError(
                    f"{url} refused a connection without a user name: {self._connack}; pass --username and "
                    "--password-file (the broker's publisher account, from `rankcast broker adduser NAME --role "
                    "publisher`)"
                )
            if self._connack.value in (_BAD_CREDENTIALS, _NOT_AUTHORIZED):
                raise CredentialsRefusedError(
                    f"{url} refused user {self.login.username!r}: {self._connack}; check --username and "
                    "--password-file (`rankcast broker adduser` makes credentials), and that --broker is the operator "
                    "listener (`rankcast broker --operator-port`, 8884): the device port refuses operator accounts"
                )
            raise BrokerRefusedError(f"{url} refused the connection: {self._connack}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish_all(
        self, messages: Iterable[tuple[str, bytes]], window: int = 20, on_ack: Callable[[int], None] | None = None
    ) -> None:
        """Publish retained QoS 1 messages in order, at most ``window`` unacknowledged at a time.

        Returns once every message is acknowledged; ``on_ack(n)`` reports n acknowledged so far.
        Raises NotAuthorizedError (ACL) or BrokerRefusedError on the first refused message.
        """
        pending: dict[int, str] = {}
        done = 0

        def settle(limit: int) -> None:
            nonlocal done
            self._wait(lambda: sum(mid not in self._acks for mid in pending) <= limit, "publish acknowledgements")
            with self._changed:
                acked = [(mid, self._acks.pop(mid)) for mid in list(pending) if mid in self._acks]
            for mid, reason in acked:
                _raise_if_refused(reason, pending.pop(mid), self.login.username)
                done += 1
                if on_ack is not None:
                    on_ack(done)

        for topic, payload in messages:
            settle(window - 1)
            info = self._client.publish(topic, payload, qos=1, retain=True)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerUnreachableError(f"cannot publish to {topic}: {mqtt.error_string(info.rc)}")
            pending[info.mid] = topic
        settle(0)

    def retained(self, filters: list[str]) -> dict[str, bytes]:
        """Every retained message matching ``filters`` now: topic -> payload (cleared topics left out).

        Subscribes at QoS 0, so the broker sends the retained messages in order, then subscribes to a
        filter that matches nothing: its acknowledgement follows the last retained message.
        """
        with self._changed:
            self._retained = {}
        try:
            self._subscribe([(f, 0) for f in filters])
            self._subscribe([(f"{filters[0].rsplit('/', 1)[0]}/.sync-{secrets.token_hex(4)}", 0)])
            time.sleep(_SETTLE_S)  # brokers other than Mosquitto may order less strictly
            self._client.unsubscribe(filters)
            with self._changed:
                return {topic: payload for topic, payload in self._retained.items() if payload}
        finally:
            with self._changed:
                self._retained = None

    def follow(self, filters: list[str], on_message: Callable[[str, bytes], None]) -> None:
        """Subscribe to ``filters`` at QoS 1 and hand every message, the retained ones first, to
        ``on_message(topic, payload)`` on the network thread (an empty payload: the topic was cleared), until
        the session closes or the connection drops (``lost`` says why)."""
        with self._changed:
            self._follower = on_message
        self._subscribe([(f, 1) for f in filters])

    @property
    def lost(self) -> str | None:
        """Why the connection dropped, or None while it holds."""
        with self._changed:
            return self._lost

    def wait_lost(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the connection to drop; True if it did."""
        with self._changed:
            return self._changed.wait_for(lambda: self._lost is not None, timeout)

    def _subscribe(self, filters: list[tuple[str, int]]) -> None:
        result, mid = self._client.subscribe(filters)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerUnreachableError(f"cannot subscribe: {mqtt.error_string(result)}")
        self._wait(lambda: mid in self._subacks, "the subscription acknowledgement")
        with self._changed:
            reasons = self._subacks.pop(mid)
        for (topic, _), reason in zip(filters, reasons, strict=True):
            _raise_if_refused(reason, topic, self.login.username)

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        with self._changed:
            while not done():
                if self._lost is not None:
                    raise BrokerUnreachableError(f"lost the connection to {self.login.url}: {self._lost}")
                if not self._changed.wait(deadline - time.monotonic()) and time.monotonic() >= deadline:
                    raise BrokerTimeoutError(f"no {what} from {self.login.url} within {self.timeout:.0f} s")

    def _notify(self, update: Callable[[], None]) -> None:
        with self._changed:
            update()
            self._changed.notify_all()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self._notify(lambda: setattr(self, "_connack", reason))

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self._notify(lambda: setattr(self, "_lost", str(reason)))

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self._notify(lambda: self._acks.__setitem__(mid, reason))

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:
        self._notify(lambda: self._subacks.__setitem__(mid, reasons))

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            if self._retained is not None and message.retain:
                self._retained[message.topic] = message.payload
            follower = self._follower
        if follower is not None:
            follower(message.topic, message.payload)


def _raise_if_refused(reason: ReasonCode, topic: str, username: str | None) -> None:
    if not reason.is_failure:
        return
    if reason.value == _NOT_AUTHORIZED:
        raise NotAuthorizedError(
            f"the broker's ACL does not let user {username!r} use {topic}; only publisher accounts "
            "(`rankcast broker adduser NAME --role publisher`) write releases"
        )
    raise BrokerRefusedError(f"the broker refused {topic}: {reason}")
