"""Keeping a device connected: one session after another, with jittered exponential backoff between."""

from __future__ import annotations

import logging
import random
import select
import ssl
import threading
import time

import paho.mqtt.client as mqtt

from device_client.backoff import Backoff
from device_client.device import Device
from device_client.session import DeviceSession

log = logging.getLogger("rankcast.device")
_TICK = 0.2
_FLUSH_TIMEOUT = 3.0
#: Most seconds spent reading what the broker still sends before a clean disconnect.
_DRAIN_S = 1.0


def run_device(device: Device, stop: threading.Event, rng: random.Random | None = None) -> None:
    """Serve ``device`` until ``stop`` is set; returns after publishing its presence offline if connected."""
    settings = device.config.client
    backoff = Backoff(settings.backoff_initial, settings.backoff_max, rng or random.Random())
    while not stop.is_set():
        session = DeviceSession(device)
        try:
            _serve(session, stop)
        except Exception:  # noqa: BLE001 - whatever went wrong with this connection, the client carries on
            log.exception("the connection to %s failed unexpectedly", device.config.broker.url)
        if session.established:
            backoff.reset()
        if stop.is_set():
            continue
        delay = backoff.next()
        log.info("reconnecting to %s in %.2f s", device.config.broker.url, delay)
        stop.wait(delay)


def _serve(session: DeviceSession, stop: threading.Event) -> None:
    """Run one connection until it ends or ``stop`` (then say offline, and disconnect cleanly)."""
    try:
        session.start()
    except (OSError, ssl.SSLError) as exc:
        log.warning("cannot reach %s: %s", session.device.config.broker.url, exc)
        return
    deadline = time.monotonic() + session.device.config.client.connect_timeout
    try:
        while not stop.is_set():
            if session.client.loop(_TICK) != mqtt.MQTT_ERR_SUCCESS or session.ended or session.refused:
                return
            if not session.connected and time.monotonic() > deadline:
                log.warning("no answer to CONNECT from %s", session.device.config.broker.url)
                return
            session.service()
        if session.connected:
            _flush(session, session.publish_offline())
            _drain(session)
    finally:
        session.client.disconnect()


def _drain(session: DeviceSession) -> None:
    """Read what the broker is still sending (acknowledgements, messages in flight) before the disconnect:
    a socket closed with unread data sends a reset, which can make the broker drop the DISCONNECT unread,
    take the clean disconnect for a lost connection and publish the last will."""
    deadline = time.monotonic() + _DRAIN_S
    while time.monotonic() < deadline:
        sock = session.client.socket()
        buffered = sock is not None and hasattr(sock, "pending") and sock.pending() > 0  # TLS holds decrypted bytes
        if sock is None or not (buffered or select.select([sock], [], [], 0.05)[0]):
            return
        if session.client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
            return


def _flush(session: DeviceSession, info: mqtt.MQTTMessageInfo | None) -> None:
    """Wait (bounded) until the broker acknowledged ``info``, so the presence "offline" is not lost."""
    deadline = time.monotonic() + _FLUSH_TIMEOUT
    while info is not None and not info.is_published() and time.monotonic() < deadline:
        if session.client.loop(_TICK) != mqtt.MQTT_ERR_SUCCESS:
            return
