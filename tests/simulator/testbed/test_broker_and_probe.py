"""A testbed broker: bulk device accounts that log in, a publisher, and a probe that outlives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec.topics import status_topic
from simulator.testbed.broker import PUBLISHER, Broker
from simulator.testbed.probe import MqttProbe, ProbeTimeout, broker_probe

pytestmark = pytest.mark.slow


def test_every_device_account_logs_in_and_a_wrong_password_does_not(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker", devices=3) as broker:
        password = broker.login(broker.device_ids[0]).password()
        for device_id in broker.device_ids:
            with MqttProbe(broker.dev_url, device_id, password) as probe:
                assert probe.accepted
        with MqttProbe(broker.dev_url, broker.device_ids[0], "not-" + password) as probe:
            assert not probe.accepted
        with broker_probe(broker) as probe:
            assert probe.accepted and probe.client._username.decode() == PUBLISHER


def test_a_probe_subscribes_again_after_the_broker_restarts(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker", devices=["dev-a"]) as broker, broker_probe(broker) as probe:
        topic = status_topic("dev-a")
        probe.subscribe(topic)
        broker.stop()
        broker.start()
        mark = probe.seen
        with broker_probe(broker, "dev-a", url=broker.dev_url) as device:
            device.publish(topic, b'{"state": "idle"}', retain=True)
        status = probe.wait_status("dev-a", lambda s: s["state"] == "idle", "the status after the restart", 20,
                                   after=mark)
        assert status == {"state": "idle", "progress": None, "last_error": None, "runtime": None, "trust": None}
        with pytest.raises(ProbeTimeout, match="no status that never comes"):
            probe.wait_status("dev-a", lambda s: False, "status that never comes", 0.3)
