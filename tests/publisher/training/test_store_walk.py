"""An operator's path from the command line alone: a release store, three updates in a row built on each
other, published to a real broker, and a device that was offline for all of them catching up in one
swap (docs/mqtt.md, "Three updates in a row")."""

from __future__ import annotations

import json

import pytest

from codec.keys import PRIVATE_NAME
from rankcast.cli import main
from simulator.testbed import synthetic
from simulator.testbed.broker import PUBLISHER, Broker
from simulator.testbed.devices import DeviceHome, DeviceThread
from simulator.testbed.waits import wait_for

MODEL = "tiny"
_BUILD = ["update", "build", "--arch", "tinynet:build", "--train", "train.npz", "--eval", "eval.npz",
          "--rank", "2", "--epochs", "2", "--store", "store", "--model", MODEL]


@pytest.mark.slow
def test_three_updates_from_the_command_line_and_a_device_offline_for_all_of_them(
    files, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    _, public = synthetic.make_keypair(tmp_path / "keys")
    with Broker(tmp_path / "broker", devices=["online", "offline"]) as broker:
        login = ["--broker", broker.operator_url, "--username", PUBLISHER, "--password-file",
                 str(broker.layout.credential(PUBLISHER)), "--cafile", str(broker.layout.ca_cert)]
        homes = {name: DeviceHome.create(tmp_path / name, broker, name, MODEL, public)
                 for name in ("online", "offline")}
        for home in homes.values():
            home.install(MODEL, files["deployed.rcw"].read_bytes(), 1)
        online = DeviceThread(homes["online"])
        try:
            assert main(["release", "init", "--store", "store", "--model", MODEL, "--deployed", "deployed.rcw",
                         "--weights", "base.pt"]) == 0
            for version in (2, 3, 4):
                assert main(_BUILD) == 0
                assert f"recorded as version {version} of {MODEL}" in capsys.readouterr().out
                first = ["--new-model"] if version == 2 else []
                assert main(["publish", *login, "--store", "store", "--model", MODEL, "--key",
                             str(tmp_path / "keys" / PRIVATE_NAME), "--chunk-size", "256", *first]) == 0
                out = capsys.readouterr().out
                assert f"published {MODEL} release {version} (delta)" in out and "full fallback" in out
                wait_for(lambda v=version: online.version(MODEL) == v, f"the online device on version {version}")
            stored = json.loads((tmp_path / "store" / MODEL / "4" / "version.json").read_text())
            assert stored["parent"] == 3 and set(stored["published"]) == {"delta", "full"}
            assert homes["online"].model_file(MODEL) == (tmp_path / "store" / MODEL / "4" / "model.rcw").read_bytes()

            late = DeviceThread(homes["offline"])  # it slept through versions 2, 3 and 4
            try:
                wait_for(lambda: late.version(MODEL) == 4, "the offline device caught up")
                fetched = {(v, kind) for v, kind, _ in late.device.updaters[MODEL].fetched}
                assert fetched <= {(2, "delta"), (3, "delta"), (4, "delta")}, "through the deltas (on their chunk "
                "topics, or inline in their manifests), never the full file"
                state = json.loads((homes["offline"].model_dir / MODEL / "state.json").read_text())
                assert (state["previous"]["version"], state["current"]["version"]) == (1, 4), "one swap"
            finally:
                late.stop()
            assert homes["offline"].model_file(MODEL) == homes["online"].model_file(MODEL)

            assert main(["release", "list", *login, "--model", MODEL, "--store", "store"]) == 0
            listed = capsys.readouterr().out
            assert "version 1: model.rcw" in listed and "flashed" in listed
            assert "version 4: model.rcw" in listed and "built on 3" in listed
            assert "broker holds delta and full" in listed
        finally:
            online.stop()
