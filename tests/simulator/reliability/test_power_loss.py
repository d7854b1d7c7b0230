"""Power loss: SIGKILL of `rankcast device run` mid-download and mid-apply leaves the old or the new model."""

from __future__ import annotations

import hashlib

import pytest

from simulator.reliability import power_loss
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceHome, DeviceProcess
from simulator.testbed.probe import broker_probe
from simulator.testbed.synthetic import make_delta_release, random_model_file
from simulator.testbed.watched import watched_device

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("case", power_loss.CASES, ids=lambda case: case.name)
def test_every_kill_leaves_old_or_new_and_the_restart_finishes(run_case, case) -> None:
    outcome, workdir = run_case(case)
    assert outcome.ok, outcome.summary()
    facts = outcome.facts
    assert outcome.runs == facts["kills"] >= 4 and facts["finished"] == facts["kills"]
    assert facts["old_file"] + facts["new_file"] == facts["kills"]
    home = DeviceHome(workdir / "device")
    version, sha, on_disk = home.state(power_loss.MODEL)
    assert version == outcome.runs + (1 if "download" in case.name else 2)
    assert sha == on_disk
    assert not home.staged(power_loss.MODEL)


def test_a_kill_right_after_applying_starts_keeps_the_old_file_byte_for_byte(tmp_path) -> None:
    model = "plx"
    with Broker(tmp_path / "broker") as broker, broker_probe(broker) as probe:
        base = random_model_file(0, {"w": (2048, 2048)})
        watched = watched_device(tmp_path, broker, probe, model, base)
        device_id, key, home = watched.device_id, watched.key, watched.home
        release, target = make_delta_release(base, 5, model, 2, key)
        device = DeviceProcess(home)
        try:
            probe.wait_status(device_id, lambda s: s.get("state") == "idle", "the device online", 30)
            broker.publish(release)
            probe.wait_status(device_id, lambda s: s.get("state") == "applying", "applying", 30)
            device.kill()
            on_disk = home.state(model)[2]
            assert on_disk in (hashlib.sha256(base).hexdigest(), hashlib.sha256(target).hexdigest())
            assert home.installed(model)[1] == on_disk
            device = DeviceProcess(home)
            probe.wait_status(device_id, lambda s: s["models"].get(model, {}).get("version") == 2, "release 2", 60)
        finally:
            device.stop()
    assert home.model_file(model) == target
