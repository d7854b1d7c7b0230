"""`rankcast rollout run` against a real broker and a small fleet: a bad release halts itself in its first
wave (paused, the rest of the fleet untouched), a good one reaches 100 %, and a run killed mid-way goes on
from its state file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from codec.keys import PRIVATE_NAME
from codec.manifest import sign_manifest
from codec.release import Release
from publisher.release.fleet_status import read_fleet
from publisher.release.publish import publish_release
from publisher.rollout.driver import Rollout, run_rollout
from publisher.rollout.steer import current_manifest
from publisher.rollout.waves import AbortPolicy, parse_waves
from rankcast.cli import main
from simulator.testbed import synthetic
from simulator.testbed.broker import PUBLISHER
from simulator.testbed.waits import wait_for

FLEET = 6


def _login(broker) -> list[str]:
    return ["--broker", broker.operator_url, "--username", PUBLISHER, "--password-file",
            str(broker.layout.credential(PUBLISHER)), "--cafile", str(broker.layout.ca_cert)]


def _release(base: bytes, model: str, key, bad: bool) -> Release:
    """Release 2 published to nobody (0 %); ``bad``: its manifest promises another result, so every device
    that applies it refuses it (bad-hash)."""
    release, _ = synthetic.make_delta_release(base, 2, model, 2, key, chunk_size=512, rollout_percent=0.0)
    if not bad:
        return release
    manifest = replace(release.manifest, target_sha256=hashlib.sha256(b"something else").digest())
    return Release(manifest, sign_manifest(manifest, key), release.chunks)


def _first_wave(release: Release, device_ids: list[str]) -> float:
    """The smallest whole percent whose cohort holds a device (and not the whole fleet)."""
    for percent in range(1, 100):
        inside = [d for d in device_ids if replace(release.manifest, rollout_percent=float(percent)).in_rollout(d)]
        if 0 < len(inside) < len(device_ids):
            return float(percent)
    raise AssertionError("no wave splits the fleet")


@pytest.fixture
def fleet(broker, device_ids, make_device, model_id):
    """FLEET devices at version 1, each with its status retained."""
    base = synthetic.random_model_file(8)
    devices = [make_device(broker, device_id, model_id, base) for device_id in device_ids(FLEET)]
    with broker.publisher() as session:
        wait_for(lambda: len(read_fleet(session, broker.prefix, model_id).devices) == FLEET, "every status retained")
    return base, devices


def _waves(release: Release, ids: list[str]) -> str:
    return f"{_first_wave(release, ids):g},100"


def test_a_bad_release_halts_itself_in_its_first_wave(broker, fleet, model_id, signing, tmp_path, capsys) -> None:
    base, devices = fleet
    release = _release(base, model_id, signing[0], bad=True)
    with broker.publisher() as session:
        publish_release(session, release, broker.prefix)
    state = tmp_path / "rollout.json"
    args = ["rollout", "run", *_login(broker), "--model", model_id, "--version", "2", "--key",
            str(signing[1].parent / PRIVATE_NAME), "--waves", _waves(release, [d.device.device_id for d in devices]),
            "--soak", "0s", "--poll", "1s", "--state", str(state)]
    assert main(args) == 3
    out = capsys.readouterr()
    assert "HALTED" in out.err and "bad-hash x" in out.err
    saved = json.loads(state.read_text())
    assert saved["outcome"] == "halted" and len(saved["history"]) == 1, "halted in its first wave"
    assert set(saved["history"][0]["failed"].values()) == {"bad-hash"}
    with broker.publisher() as session:
        assert current_manifest(session, model_id, broker.prefix, signing[0]).rollout_percent == 0.0, "paused"
    assert all(d.version(model_id) == 1 for d in devices), "nobody runs the bad release"
    outside = [d for d in devices if d.device.device_id not in saved["history"][0]["failed"]]
    assert outside and all(d.device.updaters[model_id].download is None for d in outside)
    assert main(args) == 3, "started again, a halted rollout stays halted"


def test_a_good_release_goes_on_from_its_state_and_reaches_every_device(broker, fleet, model_id, signing,
                                                                         tmp_path) -> None:
    base, devices = fleet
    release = _release(base, model_id, signing[0], bad=False)
    with broker.publisher() as session:
        publish_release(session, release, broker.prefix)
    waves = parse_waves(_waves(release, [d.device.device_id for d in devices]), soak_s=0.0, min_devices=1)
    rollout = Rollout(model_id, 2, waves, AbortPolicy(), signing[0], broker.prefix)
    state = tmp_path / "rollout.json"

    class Killed(Exception):
        pass

    def killed_in_the_last_wave(_: float) -> None:
        if json.loads(state.read_text())["wave"] == 1:
            raise Killed

    with broker.publisher() as session, pytest.raises(Killed):
        run_rollout(session, rollout, state, poll_s=0.2, sleep=killed_in_the_last_wave)
    first = json.loads(state.read_text())
    assert first["wave"] == 1 and first["wave_started"] is not None and len(first["history"]) == 1
    with broker.publisher() as session:
        done = run_rollout(session, rollout, state, poll_s=0.2)
    assert done.outcome == "completed" and done.history[0] == first["history"][0], "went on where it was"
    last = done.history[1]
    first_cohort = done.history[0]["cohort"]
    assert last["percent"] == 100 and last["joined"] == FLEET - first_cohort and last["succeeded"] > first_cohort
    wait_for(lambda: all(d.version(model_id) == 2 for d in devices), "every device at version 2")
