"""The broker as broker_config sets it up: TLS only, passwords, and an ACL that keeps devices in their lane."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from broker_config import BrokerLayout, Listeners, add_user, make_test_ca, render_config
from codec.topics import manifest_topic, status_topic
from publisher.errors import BrokerUnreachableError, CredentialsRefusedError, NotAuthorizedError
from publisher.release.session import BrokerSession
from simulator.testbed import devices
from simulator.testbed.broker import PUBLISHER, Broker
from simulator.testbed.probe import MqttProbe, broker_probe


def _listener_blocks(text: str) -> dict[str, str]:
    """Each listener's lines, by its ``listener`` line's argument."""
    blocks = re.split(r"(?m)^listener ", text)[1:]
    return {block.split("\n", 1)[0]: block for block in blocks}


def test_the_config_sets_tls_persistence_auth_and_limits(tmp_path: Path) -> None:
    layout = BrokerLayout(tmp_path)
    text = render_config(layout, Listeners(tls_port=8883, dev_port=1883, operator_dev_port=1884))
    assert "$" not in re.sub(r"(?m)^#.*$", "", text), "an unfilled placeholder"
    for line in ("per_listener_settings true", "persistence true", "tls_version tlsv1.2", "max_queued_messages 4000",
                 "max_packet_size 266240", f"certfile {layout.server_cert}"):
        assert re.search(rf"(?m)^{re.escape(line)}$", text), line
    listeners = _listener_blocks(text)
    assert set(listeners) == {"8883", "8884", "1883 127.0.0.1", "1884 127.0.0.1"}
    for name, block in listeners.items():
        device = name.split()[0] in ("8883", "1883")
        for line in ("allow_anonymous false", f"acl_file {layout.acl}",
                     f"password_file {layout.passwords if device else layout.operator_passwords}"):
            assert re.search(rf"(?m)^{re.escape(line)}$", block), (name, line)
        assert ("use_username_as_clientid true" in block) == device, name
    assert set(_listener_blocks(render_config(layout, Listeners(tls_port=8883)))) == {"8883", "8884"}


def test_a_test_ca_is_never_overwritten(tmp_path: Path) -> None:
    layout = BrokerLayout(tmp_path)
    make_test_ca(layout, ("broker.local", "10.0.0.5"))
    with pytest.raises(FileExistsError):
        make_test_ca(layout)


def _session(broker: Broker, user: str, password: Path, url: str | None = None, cafile: Path | None = None):
    login = broker.login(user, password, url)
    return BrokerSession(replace(login, cafile=cafile) if cafile else login, timeout=5.0)


def test_a_wrong_password_is_refused(broker: Broker, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    with pytest.raises(CredentialsRefusedError, match="refused user"):
        _session(broker, PUBLISHER, wrong).connect()


def test_a_device_credential_cannot_publish_releases(broker: Broker, device_ids) -> None:
    own, other = device_ids(2)
    with _session(broker, own, broker.device_password) as session:
        session.publish_all([(status_topic(own), b'{"state": "idle"}')])
        with pytest.raises(NotAuthorizedError, match="only publisher accounts"):
            session.publish_all([(manifest_topic("digits"), b"forged")])
        with pytest.raises(NotAuthorizedError):
            session.publish_all([(status_topic(other), b'{"state": "idle"}')])


def test_plain_mqtt_on_the_tls_port_gets_nowhere(broker: Broker) -> None:
    with pytest.raises(BrokerUnreachableError):
        _session(broker, PUBLISHER, broker.layout.credential(PUBLISHER),
                 f"mqtt://localhost:{broker.operator_port}").connect()


def test_a_broker_certificate_from_another_ca_is_refused(broker: Broker, tmp_path: Path) -> None:
    stranger = BrokerLayout(tmp_path / "other")
    make_test_ca(stranger)
    with pytest.raises(BrokerUnreachableError, match="certificate verify failed"):
        _session(broker, PUBLISHER, broker.layout.credential(PUBLISHER), cafile=stranger.ca_cert).connect()


def test_the_development_listener_is_plain_but_still_authenticated(broker: Broker, tmp_path: Path) -> None:
    url = broker.operator_dev_url
    with _session(broker, PUBLISHER, broker.layout.credential(PUBLISHER), url):
        pass
    wrong = tmp_path / "wrong.password"
    wrong.write_text("x\n")
    with pytest.raises(CredentialsRefusedError):
        _session(broker, PUBLISHER, wrong, url).connect()


def test_a_device_with_a_refused_password_keeps_retrying_without_dying(broker, device_ids, signing, model_id,
                                                                        tmp_path, caplog) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("wrong\n")
    config = devices.device_config(tmp_path / "dev", broker, device_ids(1)[0], model_id, signing[1])
    home = devices.DeviceHome(tmp_path / "dev")
    home.root.mkdir()
    refused = replace(config, broker=replace(config.broker, password_file=wrong))
    home.config_path.write_text(devices.render_config(refused))
    device = devices.DeviceThread(home)
    try:
        time.sleep(1.0)
        assert device.alive and device.version(model_id) is None
    finally:
        device.stop()
    assert sum("refused the connection" in record.message for record in caplog.records) >= 2


def test_retained_releases_vanish_when_the_account_that_published_them_loses_write_access(own_broker: Broker) -> None:
    """check_retain_source (docs/security.md, "Which account publishes retained releases"): what a publisher
    account retained is delivered only while it may still write there; the stable account's stays."""
    add_user(own_broker.layout, "alice", "publisher", "alice-password", prefix=own_broker.prefix)
    own_broker.stop()
    own_broker.start()
    topics = {"alice": "rankcast/models/by-alice/manifest", PUBLISHER: "rankcast/models/by-ops/manifest"}
    logins = {"alice": "alice-password", PUBLISHER: own_broker.login().password()}
    for user, password in logins.items():
        with MqttProbe(own_broker.operator_url, user, password, cafile=own_broker.layout.ca_cert) as probe:
            assert not probe.publish(topics[user], b"release", retain=True).is_failure
    acl = own_broker.layout.acl
    grant = "user alice\ntopic readwrite rankcast/models/#\n"
    assert grant in acl.read_text()
    acl.write_text(acl.read_text().replace(grant, "user alice\n"))  # alice's write access removed
    own_broker.stop()
    own_broker.start()
    with broker_probe(own_broker, own_broker.device_ids[0]) as probe:
        for topic in topics.values():
            probe.subscribe(topic)
        probe.wait(lambda: probe.latest(topics[PUBLISHER]) == b"release", "the stable account's release")
        assert probe.latest(topics["alice"]) is None, "alice's release went with her write access"
