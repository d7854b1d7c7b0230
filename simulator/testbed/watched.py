"""The set-up most reliability cases share: one device of a broker, running a model, watched by a probe.

    with Broker(workdir / "broker") as broker, broker_probe(broker) as probe:
        device = watched_device(workdir, broker, probe, "digits", model_file)
        with DeviceProcess(device.home):
            probe.wait_status(device.device_id, lambda s: s.get("state") == "idle", "the device online", 30)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codec.keys import SigningKey
from codec.topics import status_topic
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceHome
from simulator.testbed.probe import MqttProbe
from simulator.testbed.synthetic import make_keypair


@dataclass(frozen=True)
class WatchedDevice:
    """A device account, the key its releases are signed with, and its home."""

    device_id: str
    key: SigningKey
    home: DeviceHome


def watched_device(workdir: Path, broker: Broker, probe: MqttProbe, model: str, model_file: bytes, *,
                   url: str | None = None) -> WatchedDevice:
    """The broker's first device account, with a home in WORKDIR/device that runs ``model_file`` as version 1
    of ``model`` and trusts a fresh key in WORKDIR/keys; ``probe`` follows its status. ``url`` is how the
    device reaches the broker (default: its TLS listener)."""
    device_id = broker.device_ids[0]
    probe.subscribe(status_topic(device_id, broker.prefix))
    key, public = make_keypair(Path(workdir) / "keys")
    home = DeviceHome.create(Path(workdir) / "device", broker, device_id, model, public, url=url)
    home.install(model, model_file, 1)
    return WatchedDevice(device_id, key, home)
