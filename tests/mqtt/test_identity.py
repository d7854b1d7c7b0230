"""Bound identities (docs/security.md, "Who may connect where"): on the device listeners a client's id is
its user name, so one device's credential cannot take over another device's session; publishers log in on
the operator listeners only, where one account may hold several sessions."""

from __future__ import annotations

import time
from pathlib import Path

from broker_config import BrokerLayout, add_user
from broker_config.render import init_data_dir
from codec.topics import status_topic
from simulator.testbed.broker import PUBLISHER, Broker
from simulator.testbed.probe import MqttProbe, broker_probe


def _device(broker: Broker, username: str, client_id: str) -> MqttProbe:
    return MqttProbe(broker.dev_url, username, broker.device_password.read_text().strip(), client_id=client_id)


def test_a_device_credential_cannot_disconnect_another_device(broker: Broker, device_ids) -> None:
    """Before the binding this took the victim's session over three times out of three."""
    victim_id, attacker_id = device_ids(2)
    with broker_probe(broker) as watcher, _device(broker, victim_id, victim_id) as victim:
        watcher.subscribe(status_topic(victim_id))
        for attempt in range(3):
            with _device(broker, attacker_id, client_id=victim_id) as attacker:
                assert attacker.accepted, "the broker takes the connection, under the attacker's own id"
                time.sleep(0.3)
            payload = f"still here {attempt}".encode()
            assert not victim.publish(status_topic(victim_id), payload).is_failure
            watcher.wait(lambda payload=payload: watcher.received(status_topic(victim_id), payload),
                         "the victim's status")
        assert victim.disconnects == 0, "the victim's session was taken over"


def test_a_second_session_of_one_device_account_replaces_the_first(broker: Broker, device_ids) -> None:
    """The other side of the binding: a device id holds one session, whatever client id it asks for."""
    (device_id,) = device_ids(1)
    with _device(broker, device_id, "first") as first:
        with _device(broker, device_id, "second") as second:
            first.wait(lambda: first.disconnects > 0, "the first session taken over")
            assert second.accepted


def test_one_publisher_account_holds_several_sessions_on_the_operator_listener(broker: Broker) -> None:
    with broker_probe(broker) as first, broker_probe(broker) as second:
        time.sleep(0.5)
        assert first.accepted and second.accepted and first.disconnects == second.disconnects == 0


def test_each_kind_of_account_logs_in_on_its_own_listener_only(broker: Broker, device_ids) -> None:
    (device_id,) = device_ids(1)
    publisher_password = broker.login().password()
    for url in (broker.dev_url, broker.url):
        with MqttProbe(url, PUBLISHER, publisher_password, cafile=broker.layout.ca_cert) as probe:
            assert not probe.accepted, f"a publisher on the device listener {url}"
    for url in (broker.operator_dev_url, broker.operator_url):
        with MqttProbe(url, device_id, broker.device_password.read_text().strip(), cafile=broker.layout.ca_cert,
                       client_id="spoofed") as probe:
            assert not probe.accepted, f"a device on the operator listener {url}"


def test_publishers_of_an_older_data_directory_move_to_the_operator_accounts(tmp_path: Path) -> None:
    layout = BrokerLayout(tmp_path / "data")
    init_data_dir(layout)
    add_user(layout, "ops", "publisher", "ops-password")
    add_user(layout, "device-1", "device", "device-password")
    layout.passwords.write_text(layout.passwords.read_text() + layout.operator_passwords.read_text())
    layout.operator_passwords.unlink()  # as a data directory from before the operator listener
    init_data_dir(layout)
    assert [line.split(":")[0] for line in layout.operator_passwords.read_text().splitlines()] == ["ops"]
    assert [line.split(":")[0] for line in layout.passwords.read_text().splitlines()] == ["device-1"]


def test_a_name_given_another_role_leaves_its_old_password_file(tmp_path: Path) -> None:
    layout = BrokerLayout(tmp_path / "data")
    add_user(layout, "kiosk", "device", "a-password")
    add_user(layout, "kiosk", "collector", "a-password")
    assert "kiosk:" not in layout.passwords.read_text() and "kiosk:" in layout.operator_passwords.read_text()
    assert "user kiosk\ntopic read rankcast/models/#\ntopic read rankcast/trust/#\ntopic read rankcast/devices/#\n" \
        in layout.acl.read_text()
