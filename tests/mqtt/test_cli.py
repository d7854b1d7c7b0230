"""The commands as an operator types them: broker setup, publish, status, release, device."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from codec.keys import PRIVATE_NAME
from codec.topics import status_topic
from codec.update_file import updated_model_file, write_update_file
from rankcast.cli import main
from simulator.testbed import synthetic
from simulator.testbed.broker import PUBLISHER, Broker
from simulator.testbed.devices import DeviceHome
from simulator.testbed.probe import broker_probe
from simulator.testbed.waits import wait_for


def _broker_args(broker: Broker, user: str, password: Path) -> list[str]:
    return ["--broker", broker.url_for(user), "--username", user, "--password-file", str(password),
            "--cafile", str(broker.layout.ca_cert)]


def _publisher_args(broker: Broker) -> list[str]:
    return _broker_args(broker, PUBLISHER, broker.layout.credential(PUBLISHER))


def test_broker_setup_commands_fill_a_data_directory(tmp_path: Path, capsys) -> None:
    data = tmp_path / "broker-data"
    assert main(["broker", "certs", "--data-dir", str(data), "--host", "broker.local"]) == 0
    assert main(["broker", "adduser", "pump-1", "--role", "device", "--data-dir", str(data)]) == 0
    assert main(["broker", "adduser", "ops", "--role", "publisher", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "ca.crt" in out and "pump-1.password" in out
    assert [line.split(":")[0] for line in (data / "passwd").read_text().splitlines()] == ["pump-1"]
    assert [line.split(":")[0] for line in (data / "passwd-operators").read_text().splitlines()] == ["ops"]
    assert f"publisher ops added to {data.resolve() / 'passwd-operators'}" in out
    assert "user ops\ntopic readwrite rankcast/models/#" in (data / "acl").read_text()
    assert (data / "credentials" / "pump-1.password").stat().st_mode & 0o777 == 0o600
    assert main(["broker", "--data-dir", str(tmp_path / "empty"), "--port", "18999"]) == 1
    assert "[not-prepared]" in capsys.readouterr().err


@pytest.mark.slow
def test_publish_status_and_release_commands(broker, device_ids, make_device, model_id, signing, capsys) -> None:
    base = synthetic.random_model_file(8)
    device = make_device(broker, device_ids(1)[0], model_id, base)
    update = synthetic.random_update(base, 4)
    write_update_file(signing[1].parent / "v2.rcu", update)
    key = str(signing[1].parent / PRIVATE_NAME)
    publish = ["publish", *_publisher_args(broker), "--model", model_id, "--key", key, "--chunk-size", "512"]
    assert main([*publish, "--update", str(signing[1].parent / "v2.rcu"), "--version", "2"]) == 1
    assert "[new-model]" in capsys.readouterr().err, "a model id the broker has never seen is refused"
    assert main([*publish, "--update", str(signing[1].parent / "v2.rcu"), "--version", "2", "--new-model"]) == 0
    assert f"published {model_id} release 2 (delta)" in capsys.readouterr().out
    wait_for(lambda: device.version(model_id) == 2, "the published update applied")
    assert device.home.model_file(model_id) == updated_model_file(base, update)

    (signing[1].parent / "v3.rcw").write_bytes(synthetic.random_model_file(9))
    assert main([*publish, "--full", str(signing[1].parent / "v3.rcw"), "--version", "3", "--expires", "2h"]) == 0
    wait_for(lambda: device.version(model_id) == 3, "the full release applied")
    capsys.readouterr()

    def reported() -> dict:
        assert main(["status", *_publisher_args(broker), "--model", model_id, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    wait_for(lambda: reported()["versions"] == {model_id: {"3": 1}}, "status --json showing version 3")
    assert main(["status", *_publisher_args(broker), "--model", model_id]) == 0
    assert "version 3: 1" in capsys.readouterr().out

    assert main(["release", "list", *_publisher_args(broker), "--model", model_id]) == 0
    listed = capsys.readouterr().out
    assert "release 2 (delta)" in listed and "release 3 (full)" in listed and "(current)" in listed
    assert main(["release", "prune", *_publisher_args(broker), "--model", model_id]) == 0
    assert f"cleared {model_id} release 2" in capsys.readouterr().out


@pytest.mark.parametrize(("who", "code"), [("device", "not-authorized"), ("stranger", "bad-credentials")])
def test_publish_refused_by_the_broker_exits_non_zero(broker, device_ids, signing, tmp_path, capsys, who, code):
    model_file = tmp_path / "model.rcw"
    model_file.write_bytes(synthetic.random_model_file(1))
    if who == "device":
        user, password = device_ids(1)[0], broker.device_password
    else:
        user, password = PUBLISHER, tmp_path / "wrong.password"
        password.write_text("wrong\n")
    argv = ["publish", *_broker_args(broker, user, password), "--model", "digits", "--full", str(model_file),
            "--version", "1", "--key", str(signing[1].parent / PRIVATE_NAME), "--new-model"]
    assert main(argv) == 1
    assert f"rankcast: error [{code}]" in capsys.readouterr().err


def test_device_install_and_rollback_commands(broker, device_ids, signing, tmp_path, capsys) -> None:
    device_id = device_ids(1)[0]
    config = DeviceHome.create(tmp_path, broker, device_id, "digits", signing[1]).config_path
    for version, seed in ((1, 1), (2, 2)):
        (tmp_path / f"v{version}.rcw").write_bytes(synthetic.random_model_file(seed))
        argv = ["device", "install", "--config", str(config), "--model", "digits",
                "--file", str(tmp_path / f"v{version}.rcw"), "--version", str(version)]
        assert main(argv) == 0
    assert main(["device", "rollback", "--config", str(config), "--model", "digits"]) == 0
    assert "rolled back to version 1" in capsys.readouterr().out
    assert (tmp_path / "models" / "digits" / "model.rcw").read_bytes() == (tmp_path / "v1.rcw").read_bytes()
    assert main(["device", "rollback", "--config", str(config), "--model", "digits"]) == 1
    assert "[no-previous]" in capsys.readouterr().err
    assert main(["device", "install", "--config", str(config), "--model", "other", "--file",
                 str(tmp_path / "v1.rcw"), "--version", "1"]) == 1
    assert "[bad-config]" in capsys.readouterr().err


@pytest.mark.slow
def test_device_run_follows_releases_and_says_offline_when_stopped(broker, device_ids, model_id, signing, tmp_path):
    device_id = device_ids(1)[0]
    config = DeviceHome.create(tmp_path, broker, device_id, model_id, signing[1]).config_path
    base = synthetic.random_model_file(6)
    (tmp_path / "base.rcw").write_bytes(base)
    assert main(["device", "install", "--config", str(config), "--model", model_id,
                 "--file", str(tmp_path / "base.rcw"), "--version", "1"]) == 0
    process = subprocess.Popen([sys.executable, "-m", "rankcast", "device", "run", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with broker_probe(broker) as probe:
            probe.subscribe(status_topic(device_id))
            probe.wait_status(device_id, lambda s: s.get("state") == "idle", "the device online")
            release, expected = synthetic.make_delta_release(base, 3, model_id, 2, signing[0])
            broker.publish(release)
            probe.wait_status(device_id, lambda s: s.get("models", {}).get(model_id, {}).get("version") == 2,
                              "version 2 reported")
            assert (tmp_path / "models" / model_id / "model.rcw").read_bytes() == expected
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
            final = probe.wait_status(device_id, lambda s: s.get("state") == "offline", "offline when stopped")
            states = [s["state"] for s in probe.statuses(device_id)]
            # a commit needs no reconnect (the will is the presence): offline only once, at the end
            assert states.count("offline") == 1 and states[-1] == "offline", states
            assert final["models"][model_id]["version"] == 2
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=5)[0]
    assert "release 2 committed" in output


def test_an_interrupted_publish_says_what_the_broker_holds_and_how_to_finish(
    broker, model_id, signing, tmp_path, capsys, monkeypatch
) -> None:
    from rankcast.commands import publish

    (tmp_path / "v1.rcw").write_bytes(synthetic.random_model_file(11))
    argv = ["publish", *_publisher_args(broker), "--model", model_id, "--full", str(tmp_path / "v1.rcw"), "--version",
            "1", "--key", str(signing[1].parent / PRIVATE_NAME), "--chunk-size", "512", "--new-model"]
    real_update = publish._Progress.update

    def ctrl_c_after_three(self, done: int) -> None:
        real_update(self, done)
        if done == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(publish._Progress, "update", ctrl_c_after_three)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "acknowledged 3 of " in err and "devices have not seen this release" in err and err.count("\n") == 1
    assert f"rankcast release delete --model {model_id} --version 1" in err
    with broker.publisher() as session:
        held = session.retained([f"rankcast/models/{model_id}/#"])
    assert held and f"rankcast/models/{model_id}/manifest" not in held, "chunks only, not the model's manifest"
    monkeypatch.setattr(publish._Progress, "update", real_update)
    assert main(argv) == 0, "the same command finishes it"
    out = capsys.readouterr().out
    assert re.search(r"expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out), out
