"""The trust root end to end on a real Mosquitto, with the commands an operator types: a key ceremony, a
planned rotation the devices take without the release published again, a publisher refused a key the
broker's root does not list, an emergency revocation, a rotation of the root keys, a device offline
across all three rotations catching up, and a release threshold of two keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec.keys import PRIVATE_NAME, PUBLIC_NAME
from codec.topics import status_filter
from publisher.release.build import load_release_key
from rankcast.cli import main
from simulator.testbed import synthetic
from simulator.testbed.broker import PUBLISHER, Broker
from simulator.testbed.devices import DeviceHome, DeviceThread
from simulator.testbed.probe import broker_probe

pytestmark = pytest.mark.slow
MODEL = "trusted"


def _broker(broker: Broker) -> list[str]:
    return ["--broker", broker.operator_url, "--username", PUBLISHER, "--password-file",
            str(broker.layout.credential(PUBLISHER)), "--cafile", str(broker.layout.ca_cert)]


def _keys(directory: Path, names: list[str]) -> dict[str, Path]:
    for name in names:
        assert main(["keygen", str(directory / name)]) == 0
    return {name: directory / name for name in names}


def _publish_full(broker: Broker, tmp_path: Path, key: Path, version: int, *extra: str) -> int:
    model_file = tmp_path / f"v{version}.rcw"
    model_file.write_bytes(synthetic.random_model_file(version))
    return main(["publish", *_broker(broker), "--model", MODEL, "--key", str(key / PRIVATE_NAME), "--full",
                 str(model_file), "--version", str(version), *extra])


def test_ceremony_rotation_revocation_and_a_device_offline_across_three_rotations(
    own_broker: Broker, tmp_path: Path, capsys
) -> None:
    keys = _keys(tmp_path / "keys", ["root-a", "root-b", "root-c", "root-d", "k1", "k2", "k3"])
    trust = str(tmp_path / "trust")
    sign = lambda *names: [arg for n in names for arg in ("--root-key", str(keys[n] / PRIVATE_NAME))]  # noqa: E731
    assert main(["trust", "init", trust, *sign("root-a", "root-b"), "--root-key", str(keys["root-c"] / PUBLIC_NAME),
                 "--threshold", "2", "--release-key", str(keys["k1"] / PUBLIC_NAME)]) == 0
    assert main(["trust", "publish", trust, *_broker(own_broker)]) == 0
    homes = {device_id: DeviceHome.create(tmp_path / device_id, own_broker, device_id, MODEL, (),
                                          trust_root=Path(trust) / "root.1") for device_id in own_broker.device_ids}
    online_id, offline_id = own_broker.device_ids
    for home in homes.values():
        home.install(MODEL, synthetic.random_model_file(1), 1)
    online = DeviceThread(homes[online_id])
    with broker_probe(own_broker) as probe:
        probe.subscribe(status_filter())
        assert _publish_full(own_broker, tmp_path, keys["k1"], 2, "--new-model") == 0
        probe.wait_status(online_id, lambda s: s["models"][MODEL]["version"] == 2, "v2 signed by k1 under root v1")

        # A planned rotation to k2: the publisher refuses k2 until the broker's root lists it.
        capsys.readouterr()
        assert _publish_full(own_broker, tmp_path, keys["k2"], 3) == 1
        assert "[untrusted-key]" in capsys.readouterr().err and "unknown-key" not in str(probe.status(online_id))
        assert main(["trust", "add-key", trust, "--key", str(keys["k2"] / PUBLIC_NAME), *sign("root-a")]) == 0
        assert "still needs" in capsys.readouterr().out
        assert main(["trust", "sign", trust, *sign("root-b")]) == 0  # the second root key, on its own machine
        # Published in the wrong order on purpose (--force): the device refuses, then takes it once the root
        # comes, without v3 published again.
        assert _publish_full(own_broker, tmp_path, keys["k2"], 3, "--force") == 0
        probe.wait_status(online_id, lambda s: (s["last_error"] or {}).get("code") == "unknown-key",
                          "v3 refused before root v2")
        assert main(["trust", "publish", trust, *_broker(own_broker)]) == 0
        probe.wait_status(online_id, lambda s: s["models"][MODEL]["version"] == 3 and s["trust"]["root"] == 2,
                          "v3 taken under root v2 without publishing it again")

        # An emergency revocation of k1: its new releases are refused.
        revoke = ["trust", "revoke-key", trust, "--key", str(keys["k1"] / PUBLIC_NAME), *sign("root-a", "root-b")]
        assert main(revoke) == 0
        assert main(["trust", "publish", trust, *_broker(own_broker)]) == 0
        probe.wait_status(online_id, lambda s: s["trust"]["root"] == 3, "root v3 taken")
        assert _publish_full(own_broker, tmp_path, keys["k1"], 4) == 1, "the publisher refuses a revoked key"
        mark = probe.seen
        assert _publish_full(own_broker, tmp_path, keys["k1"], 4, "--force") == 0
        probe.wait_status(online_id, lambda s: (s["last_error"] or {}).get("code") == "revoked-key",
                          "v4 signed by the revoked k1 refused", after=mark)
        assert probe.status(online_id)["models"][MODEL]["version"] == 3

        # The root keys rotate: root-a leaves, root-d joins (signed by two old keys and two of its own).
        assert main(["trust", "rotate-root", trust, "--add-root-key", str(keys["root-d"] / PRIVATE_NAME),
                     "--remove-root-key", str(keys["root-a"] / PUBLIC_NAME), *sign("root-b", "root-c")]) == 0
        assert main(["trust", "publish", trust, *_broker(own_broker)]) == 0
        assert _publish_full(own_broker, tmp_path, keys["k2"], 5) == 0
        probe.wait_status(online_id, lambda s: s["models"][MODEL]["version"] == 5 and s["trust"]["root"] == 4,
                          "v5 under root v4")

        # The device that was offline for all of it walks roots v2..v4 and takes v5.
        offline = DeviceThread(homes[offline_id])
        probe.wait_status(offline_id, lambda s: s["models"][MODEL]["version"] == 5 and s["trust"]["root"] == 4,
                          "the offline device caught up through three rotations")

        # Two release keys must sign from root v5 on: one alone is refused before anything is sent.
        assert main(["trust", "add-key", trust, "--key", str(keys["k3"] / PUBLIC_NAME), "--release-threshold", "2",
                     *sign("root-b", "root-d")]) == 0
        assert main(["trust", "publish", trust, *_broker(own_broker)]) == 0
        capsys.readouterr()
        assert _publish_full(own_broker, tmp_path, keys["k2"], 6) == 1
        assert "[below-threshold]" in capsys.readouterr().err
        assert _publish_full(own_broker, tmp_path, keys["k2"], 6, "--cosign-key", str(keys["k3"] / PRIVATE_NAME)) == 0
        for device_id in (online_id, offline_id):
            probe.wait_status(device_id, lambda s: s["models"][MODEL]["version"] == 6, "v6 signed by k2 and k3")
    assert homes[offline_id].model_file(MODEL) == synthetic.random_model_file(6)
    assert load_release_key(keys["k2"] / PRIVATE_NAME).verify_key.key_id in capsys.readouterr().out
    for device in (online, offline):
        device.stop()
