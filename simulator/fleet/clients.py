"""Many real device clients in one process: device_client sessions driven by an asyncio event loop.

paho's ``loop()`` uses select(), which fails past about 1,000 file descriptors, and a thread per client
does not scale, so each session's socket is registered with the event loop instead (paho's external-loop
API: ``loop_read`` when readable, ``loop_write`` when paho asks to write, ``loop_misc`` on a tick).
Everything a device decides stays in device_client (``Device`` and ``DeviceSession``); this module only
keeps each device connected, as device_client.runner does for one device in a thread: a new session
after every disconnect and a jittered exponential backoff between attempts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from enum import Enum

import paho.mqtt.client as mqtt

from device_client.backoff import Backoff
from device_client.device import Device
from device_client.session import DeviceSession

log = logging.getLogger("rankcast.simulator")


class Phase(Enum):
    WAITING = "waiting"          # no session; the next attempt is due at ``retry_at``
    CONNECTING = "connecting"    # CONNECT sent, no CONNACK yet
    CONNECTED = "connected"
    STOPPED = "stopped"


class FleetClient:
    """One device kept connected on ``loop``; ``on_service`` runs after each round of network I/O."""

    def __init__(
        self,
        device: Device,
        loop: asyncio.AbstractEventLoop,
        *,
        time_scale: float = 1.0,
        connect_timeout_s: float = 20.0,
        on_service: Callable[[FleetClient], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        settings = device.config.client
        self.device, self.loop = device, loop
        self.on_service = on_service
        # Backoff figures are link time (what the device's own clock would wait); waits here are wall time.
        self._scale = time_scale
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max, rng or random.Random())
        self._connect_timeout_s = connect_timeout_s
        self.session: DeviceSession | None = None
        self.phase = Phase.WAITING
        self.retry_at = 0.0
        self.sessions = 0
        self.reconnects = 0
        self._deadline = 0.0
        self._socket = None

    # -- driven by the fleet ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Periodic work: keepalive, timeouts, reconnects and the device's own service."""
        now = time.monotonic()
        if self.phase is Phase.STOPPED:
            return
        if self.phase is Phase.WAITING:
            if now >= self.retry_at:
                self._open()
            return
        if self.phase is Phase.CONNECTING and now > self._deadline:
            log.info("%s: no answer to CONNECT, retrying", self.device.device_id)
            self._drop()
            return
        self.session.client.loop_misc()
        self._after_io()

    def stop(self) -> None:
        """Drop the connection without waiting (the broker publishes the last will)."""
        if self.phase is not Phase.STOPPED and self.session is not None:
            self._close_socket()
        self.phase = Phase.STOPPED

    # -- sessions -------------------------------------------------------------------------------------------

    def _open(self) -> None:
        self.session = session = DeviceSession(self.device)
        client = session.client
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        self.phase = Phase.CONNECTING
        self._deadline = time.monotonic() + self._connect_timeout_s
        if self.sessions:
            self.reconnects += 1
        self.sessions += 1
        try:
            session.start()
        except (OSError, ssl.SSLError) as exc:
            log.info("%s: cannot reach %s: %s", self.device.device_id, self.device.config.broker.url, exc)
            self._drop()

    def _after_io(self) -> None:
        session = self.session
        if session is None or self.phase in (Phase.WAITING, Phase.STOPPED):
            return
        if session.ended or session.refused:
            self._drop()
            return
        if session.connected and self.phase is Phase.CONNECTING:
            self.phase = Phase.CONNECTED
            self._backoff.reset()
        try:
            session.service()
        except Exception:  # noqa: BLE001 - like the runner: a failing connection never stops the client
            log.exception("%s: the session failed", self.device.device_id)
            self._drop()
            return
        if self.on_service is not None:
            self.on_service(self)

    def _drop(self) -> None:
        """End a lost or failed session; the next attempt waits for the backoff (link time, scaled)."""
        self._close_socket()
        self.session = None
        if self.phase is Phase.STOPPED:
            return
        self.phase = Phase.WAITING
        self.retry_at = time.monotonic() + self._backoff.next() / self._scale

    def _close_socket(self) -> None:
        sock = self._socket
        self._socket = None
        if sock is not None:
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
            try:
                sock.close()
            except OSError:
                pass

    # -- paho's external-loop callbacks ---------------------------------------------------------------------

    def _socket_open(self, client, userdata, sock) -> None:
        self._socket = sock
        self.loop.add_reader(sock, self._readable, client)

    def _socket_close(self, client, userdata, sock) -> None:
        if sock is self._socket:
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
            self._socket = None

    def _register_write(self, client, userdata, sock) -> None:
        if sock is self._socket:
            self.loop.add_writer(sock, self._writable, client)

    def _unregister_write(self, client, userdata, sock) -> None:
        if sock is self._socket:
            self.loop.remove_writer(sock)

    def _readable(self, client: mqtt.Client) -> None:
        if self.session is None or client is not self.session.client:
            return
        client.loop_read(max_packets=16)
        self._after_io()

    def _writable(self, client: mqtt.Client) -> None:
        if self.session is None or client is not self.session.client:
            return
        client.loop_write()
        self._after_io()


async def serve_clients(clients: list[FleetClient], open_batch: int = 25, tick_s: float = 0.25) -> None:
    """Open the clients' first connections ``open_batch`` at a time, then serve every client's timers forever
    (cancel the task to stop)."""
    for start in range(0, len(clients), open_batch):
        for client in clients[start : start + open_batch]:
            client.tick()
        await asyncio.sleep(0.01)
    while True:
        for index, client in enumerate(clients):
            client.tick()
            if index % 100 == 99:
                await asyncio.sleep(0)
        await asyncio.sleep(tick_s)
