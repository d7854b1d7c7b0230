"""Power loss: SIGKILL of `rankcast device run` mid-download and mid-apply leaves the old or the new model."""

from __future__ import annotations

import hashlib
import signal

import pytest

from simulator.selftest import power_loss
from simulator.selftest.harness import (
    SelftestBroker,
    StatusWatcher,
    file_sha256,
    install_model,
    installed,
    make_delta_release,
    make_device_config,
    make_keypair,
    make_model,
    model_dir,
    publish_release,
    start_device_process,
    stop_process,
    store_state,
)


@pytest.mark.parametrize("case", power_loss.CASES, ids=lambda case: case.name)
def test_every_kill_leaves_old_or_new_and_the_restart_finishes(run_case, case) -> None:
    outcome, workdir = run_case(case)
    assert outcome.ok, outcome
    assert outcome.runs >= 4
    config = workdir / "device" / "device.toml"
    version, sha, on_disk = store_state(config, power_loss.MODEL)
    assert version == outcome.runs + (1 if "download" in case.name else 2)
    assert sha == on_disk
    assert not list((model_dir(config) / power_loss.MODEL).glob(".staged-*"))


def test_a_kill_right_after_applying_starts_keeps_the_old_file_byte_for_byte(tmp_path) -> None:
    model = "plx"
    with SelftestBroker(tmp_path / "broker") as broker, StatusWatcher(broker) as watcher:
        device_id = broker.device_ids[0]
        key, public = make_keypair(tmp_path / "keys")
        config = make_device_config(tmp_path / "device", broker, device_id, model, public)
        base = make_model(0, {"w": (2048, 2048)})
        install_model(config, model, base, 1)
        running = model_dir(config) / model / "model.rcw"
        release, target = make_delta_release(running, 5, model, 2, key)
        process = start_device_process(config)
        try:
            watcher.wait(lambda s: s.get("state") == "idle", device_id, 30, "the device online")
            publish_release(broker, release)
            watcher.wait(lambda s: s.get("state") == "applying", device_id, 30, "applying")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            assert file_sha256(running) in (hashlib.sha256(base).hexdigest(), target)
            assert installed(config, model)[1] == file_sha256(running)
            process = start_device_process(config)
            watcher.wait(lambda s: s["models"].get(model, {}).get("version") == 2, device_id, 60, "release 2")
        finally:
            stop_process(process)
        assert running.read_bytes() != base and file_sha256(running) == target
