"""`rankcast rollout` against a real broker and devices: a release published to nobody (0 %) reaches
every device once widened, and only its manifest is sent again."""

from __future__ import annotations

import time

from codec.keys import PRIVATE_NAME, generate_signing_key, write_keypair
from codec.update_file import write_update_file
from rankcast.cli import main
from simulator.testbed import synthetic
from simulator.testbed.broker import PUBLISHER
from simulator.testbed.probe import broker_probe
from simulator.testbed.waits import wait_for


def _login(broker) -> list[str]:
    return ["--broker", broker.operator_url, "--username", PUBLISHER, "--password-file",
            str(broker.layout.credential(PUBLISHER)), "--cafile", str(broker.layout.ca_cert)]


def test_widening_sends_only_the_manifest_and_reaches_every_device(broker, device_ids, make_device, model_id,
                                                                    signing, tmp_path, capsys, operator_error) -> None:
    base = synthetic.random_model_file(8)
    fleet = [make_device(broker, device_id, model_id, base) for device_id in device_ids(4)]
    write_update_file(tmp_path / "v2.rcu", synthetic.random_update(base, 4))
    key = str(signing[1].parent / PRIVATE_NAME)
    assert main(["publish", *_login(broker), "--model", model_id, "--update", str(tmp_path / "v2.rcu"),
                 "--version", "2", "--key", key, "--chunk-size", "512", "--rollout", "0", "--new-model"]) == 0
    wait_for(lambda: all(d.device.updaters[model_id].latest_digest is not None for d in fleet), "the manifest seen")
    time.sleep(0.5)
    assert all(d.version(model_id) == 1 for d in fleet), "0 %: nobody takes it"
    capsys.readouterr()
    with broker_probe(broker) as watcher:
        watcher.subscribe(f"{broker.prefix}/models/{model_id}/#")
        time.sleep(0.3)
        retained = watcher.seen
        rollout = ["rollout", "set", *_login(broker), "--model", model_id, "--version", "2", "--key", key]
        assert main([*rollout, "--percent", "100"]) == 0
        assert f"{model_id} release 2: rollout 100%" in capsys.readouterr().out
        wait_for(lambda: all(d.version(model_id) == 2 for d in fleet), "every device at version 2")
        sent = [topic for topic, _, _ in watcher.messages[retained:]]
    assert sorted(sent) == sorted([f"{broker.prefix}/models/{model_id}/manifest",
                                   f"{broker.prefix}/models/{model_id}/releases/2/delta/manifest"]), sent

    assert main([*rollout[:-4], "--version", "3", "--key", key, "--pause"]) == 1
    assert "latest release is 2, not 3" in operator_error("not-latest")
    stranger, _ = write_keypair(tmp_path / "stranger", generate_signing_key())
    assert main(["rollout", "set", *_login(broker), "--model", model_id, "--version", "2", "--key", str(stranger),
                 "--pause"]) == 1
    assert "not signed by key" in operator_error("untrusted-key")


def test_a_small_release_travels_inline_and_widening_keeps_its_payload(broker, device_ids, make_device, model_id,
                                                                      signing, tmp_path, capsys) -> None:
    """A one-chunk update of a few hundred bytes has no chunk topic: its manifests carry it. Widened, the
    manifest signed again still carries it (devices have nowhere else to get it)."""
    base = synthetic.random_model_file(8)
    fleet = [make_device(broker, device_id, model_id, base) for device_id in device_ids(2)]
    write_update_file(tmp_path / "v2.rcu", synthetic.random_update(base, 4))
    key = str(signing[1].parent / PRIVATE_NAME)
    assert main(["publish", *_login(broker), "--model", model_id, "--update", str(tmp_path / "v2.rcu"),
                 "--version", "2", "--key", key, "--rollout", "0", "--new-model"]) == 0
    with broker.publisher() as session:
        topics = session.retained([f"{broker.prefix}/models/{model_id}/#"])
    assert topics and not [t for t in topics if "/chunks/" in t], "no chunk topic: the payload is inline"
    wait_for(lambda: all(d.device.updaters[model_id].latest_digest is not None for d in fleet), "the manifest seen")
    capsys.readouterr()
    assert main(["rollout", "set", *_login(broker), "--model", model_id, "--version", "2", "--key", key,
                 "--percent", "100"]) == 0
    assert "rollout 100%" in (said := capsys.readouterr().out) and "its chunk inline" in said, said
    wait_for(lambda: all(d.version(model_id) == 2 for d in fleet), "every device at version 2 from the inline payload")
    assert all(not d.device.updaters[model_id].fetched for d in fleet), "no chunk came from a chunk topic"
