"""The publisher's commands as a new user mistypes them: each mistake is one line, `rankcast: error [code]: ...`,
saying what to change (a real Mosquitto for the broker mistakes; no torch needed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from codec.keys import PRIVATE_NAME
from rankcast.cli import main
from simulator.testbed import synthetic
from simulator.testbed.broker import PUBLISHER, Broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with Broker(tmp_path_factory.mktemp("broker") / "broker", devices=0) as running:
        yield running


def _status(broker: Broker, url: str, *extra: str) -> int:
    login = ["--username", PUBLISHER, "--password-file", str(broker.password_file(PUBLISHER))]
    return main(["status", "--broker", url, *login, "--timeout", "10", *extra])


@pytest.mark.parametrize("url", ["bad://x", "mqtt://", "mqtt://host:99999", "mqtts://ops:secret@host:8883"])
def test_a_malformed_broker_url_is_refused_before_connecting(operator_error, url: str) -> None:
    assert main(["status", "--broker", url]) == 1
    assert "mqtts://" in operator_error("bad-broker-url")


@pytest.mark.parametrize("command", [["release", "list", "--model", "digits"], ["publish", "--version", "1"]])
def test_every_broker_command_refuses_a_malformed_url(tmp_path: Path, operator_error, command: list[str]) -> None:
    synthetic.make_keypair(tmp_path / "keys")
    (tmp_path / "v1.rcw").write_bytes(synthetic.random_model_file(1))
    publish = ["--model", "digits", "--full", str(tmp_path / "v1.rcw"), "--key", str(tmp_path / "keys" / PRIVATE_NAME)]
    assert main([*command, *(publish if command[0] == "publish" else []), "--broker", "bad://x"]) == 1
    assert "bad://x" in operator_error("bad-broker-url")


def test_plain_mqtt_against_the_tls_port_says_to_use_mqtts(broker, operator_error) -> None:
    assert _status(broker, f"mqtt://localhost:{broker.operator_port}") == 1
    assert f"the broker speaks TLS on this port; use mqtts://localhost:{broker.operator_port}" in operator_error(
        "broker-unreachable")


def test_tls_against_the_plain_port_says_to_use_mqtt(broker, operator_error) -> None:
    assert _status(broker, f"mqtts://127.0.0.1:{broker.operator_dev_port}", "--cafile", str(broker.layout.ca_cert)) == 1
    assert f"use mqtt://127.0.0.1:{broker.operator_dev_port}" in operator_error("broker-unreachable")


def test_a_missing_cafile_is_named_as_the_fix(broker, operator_error) -> None:
    assert _status(broker, broker.operator_url) == 1
    line = operator_error("broker-unreachable")
    assert "certificate verify failed" in line and "pass --cafile" in line and "ca.crt" in line


def test_a_cafile_that_is_no_certificate_is_one_line(broker, tmp_path: Path, operator_error) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    assert _status(broker, broker.operator_url, "--cafile", str(tmp_path / "ca.crt")) == 1
    assert "--cafile" in operator_error("bad-config")


def test_nothing_listening_is_one_line(broker, operator_error) -> None:
    from broker_config import free_port

    assert _status(broker, f"mqtt://127.0.0.1:{free_port()}") == 1
    assert "is the broker running" in operator_error("broker-unreachable")


def test_a_missing_user_name_says_to_pass_one(broker, operator_error) -> None:
    cafile = str(broker.layout.ca_cert)
    assert main(["status", "--broker", broker.operator_url, "--cafile", cafile, "--timeout", "10"]) == 1
    line = operator_error("bad-credentials")
    assert "without a user name" in line and "pass --username and --password-file" in line and "None" not in line


def test_a_model_no_device_follows_is_named_with_the_ones_they_do(broker, operator_error, capsys) -> None:
    from codec.topics import status_topic

    status = {"device": PUBLISHER, "state": "idle", "models": {"digits": {"version": 2, "sha256": "00"}}}
    with broker.publisher() as session:  # a status as a device publishes it (on the one topic the ACL lets us)
        session.publish_all([(status_topic(PUBLISHER), json.dumps(status).encode())])
    try:
        assert _status(broker, broker.operator_url, "--cafile", str(broker.layout.ca_cert), "--model", "digit") == 1
        line = operator_error("unknown-model")
        assert "no device follows model 'digit'" in line and "report digits" in line
        assert _status(broker, broker.operator_url, "--cafile", str(broker.layout.ca_cert), "--model", "digits") == 0
        assert "1 devices" in capsys.readouterr().out
    finally:
        with broker.publisher() as session:
            session.publish_all([(status_topic(PUBLISHER), b"")])


def test_the_right_options_reach_the_broker(broker, capsys) -> None:
    assert _status(broker, broker.operator_url, "--cafile", str(broker.layout.ca_cert), "--json") == 0
    assert '"devices"' in capsys.readouterr().out


@pytest.mark.parametrize(("option", "value", "hint"), [
    ("--expires", "30days", "is not a duration"),
    ("--expires", "0d", "give a lifetime above 0"),
    ("--chunk-size", "16", "outside 256..131072 bytes"),
])
def test_publish_options_out_of_range_are_refused_before_connecting(tmp_path: Path, operator_error, option, value,
                                                                    hint: str) -> None:
    synthetic.make_keypair(tmp_path / "keys")
    (tmp_path / "v1.rcw").write_bytes(synthetic.random_model_file(1))
    argv = ["publish", "--broker", "mqtt://127.0.0.1:1", "--model", "digits", "--full", str(tmp_path / "v1.rcw"),
            "--version", "1", "--key", str(tmp_path / "keys" / PRIVATE_NAME), option, value]
    assert main(argv) == 1
    line = operator_error("bad-config")
    assert option in line and hint in line


@pytest.mark.parametrize("release", ["--full", "--update"])
def test_a_chunk_size_devices_refuse_is_caught_before_connecting(tmp_path: Path, operator_error, release) -> None:
    from codec.update_file import write_update_file

    synthetic.make_keypair(tmp_path / "keys")
    base = synthetic.random_model_file(1)
    (tmp_path / "v1.rcw").write_bytes(base)
    write_update_file(tmp_path / "v2.rcu", synthetic.random_update(base, 2))
    source = str(tmp_path / ("v1.rcw" if release == "--full" else "v2.rcu"))
    argv = ["publish", "--broker", "mqtt://127.0.0.1:1", "--model", "digits", release, source, "--version", "2",
            "--key", str(tmp_path / "keys" / PRIVATE_NAME), "--chunk-size", "0"]
    assert main(argv) == 1
    assert "--chunk-size 0" in operator_error("bad-config")


def test_a_public_key_given_as_the_signing_key_names_the_private_one(tmp_path: Path, operator_error) -> None:
    _, public = synthetic.make_keypair(tmp_path / "keys")
    (tmp_path / "v1.rcw").write_bytes(synthetic.random_model_file(1))
    argv = ["publish", "--broker", "mqtt://127.0.0.1:1", "--model", "digits", "--full", str(tmp_path / "v1.rcw"),
            "--version", "1", "--key", str(public)]
    assert main(argv) == 1
    assert PRIVATE_NAME in operator_error("bad-key")


def test_a_publisher_on_the_device_port_is_told_to_use_the_operator_port(broker, operator_error) -> None:
    assert _status(broker, broker.url, "--cafile", str(broker.layout.ca_cert)) == 1
    assert "the device port refuses operator accounts" in operator_error("bad-credentials")
