"""The dashboard's feed against a real Mosquitto, logged in as the read-only collector: it holds every status
and manifest, refuses to keep an oversized status whole, marks itself disconnected while the broker is down
and reads the retained state afresh once it is back; wrong credentials are a coded error at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from codec.topics import status_topic
from publisher.dashboard.feed import MAX_STATUS_BYTES, FleetFeed
from publisher.dashboard.view import fleet_view
from publisher.errors import CredentialsRefusedError
from simulator.testbed.broker import COLLECTOR, Broker
from simulator.testbed.probe import broker_probe
from simulator.testbed.waits import wait_for


def _status(device: str, version: int, padding: int = 0) -> bytes:
    return json.dumps({"device": device, "state": "idle", "models": {"m": {"version": version}},
                       "sent": time.time(), "heartbeat": 600, "note": "x" * padding}).encode()



def test_the_feed_follows_statuses_and_comes_back_after_a_broker_restart(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker", devices=2) as broker:
        first, second = broker.device_ids
        _status_as(broker, first, _status(first, 1))
        feed = FleetFeed(broker.login(COLLECTOR), broker.prefix, timeout=10)
        feed.start()
        try:
            wait_for(lambda: len(feed.snapshot().statuses) == 1, "the retained status")
            _status_as(broker, second, _status(second, 2, padding=MAX_STATUS_BYTES))
            wait_for(lambda: len(feed.snapshot().statuses) == 2, "the live status")
            view = fleet_view(feed.snapshot(), time.time())
            assert view["states"] == {"idle": 1, "invalid": 1}, "the oversized status is kept as a marker"
            assert len(feed.snapshot().statuses[status_topic(second, broker.prefix)]) < MAX_STATUS_BYTES
            broker.stop()
            wait_for(lambda: not feed.snapshot().connected, "the feed to notice the broker is gone")
            assert feed.snapshot().problem
            broker.start()
            wait_for(lambda: feed.snapshot().connected and len(feed.snapshot().statuses) == 2, "reconnected",
                     timeout=60)
            assert feed.snapshot().problem is None
        finally:
            feed.stop()


def test_wrong_credentials_are_refused_before_anything_is_served(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker", devices=0) as broker:
        wrong = tmp_path / "wrong"
        wrong.write_text("not the password\n")
        with pytest.raises(CredentialsRefusedError):
            FleetFeed(broker.login(COLLECTOR, password_file=wrong), broker.prefix, timeout=10).start()


def _status_as(broker: Broker, device: str, payload: bytes) -> None:
    """Leave ``payload`` as ``device``'s retained status, logged in as that device."""
    with broker_probe(broker, device) as probe:
        probe.publish(status_topic(device, broker.prefix), payload, retain=True)
