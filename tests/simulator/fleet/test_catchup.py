"""A fleet spread over versions 1..4 by staged rollouts and offline periods ends on version 5, each device
by the cheapest path its start allows, against a real broker (simulator.fleet.catchup)."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest

from codec.manifest import signed_digest
from publisher.release.build import full_release
from simulator.fleet.catchup import MODEL, SHAPES, _settled, run_catchup, write_report
from simulator.testbed.synthetic import DAY, make_keypair, random_model_file


@pytest.mark.slow
def test_every_device_reaches_the_latest_by_its_cheapest_path(tmp_path) -> None:
    report = run_catchup(tmp_path / "run", devices=12, last=5, say=lambda line: None)
    by_start = {d.device_id: d for d in report.devices}
    assert len(report.devices) == 13 and {d.start_version for d in report.devices} == {1, 2, 3, 4}
    for device in report.devices:
        assert device.final_version == 5 and device.exact, device
        assert device.fetched_bytes == device.path_bytes, \
            f"{device.device_id} fetched {device.fetched_bytes} B for a path of {device.path_bytes} B"
    stranger = by_start["device-012"]
    assert stranger.path == ["5f"] and stranger.fetched_bytes == report.full_bytes, "older than the history: full"
    for device in report.devices[:-1]:
        assert device.path == [str(v) for v in range(device.start_version + 1, 6)], device
        assert device.fetched_bytes < report.full_bytes / 4
    assert report.egress_bytes < report.everyone_full_bytes / 4
    written = json.loads(write_report(report, tmp_path / "out").read_text())
    assert written["egress_bytes"] == report.egress_bytes and len(written["devices"]) == 13


def test_a_device_planning_the_latest_is_not_settled(tmp_path) -> None:
    """The device's thread records the manifest's digest before it plans the download: a device in the
    rollout that has not installed the latest yet is not settled, or the run takes a stale start."""
    key, _ = make_keypair(tmp_path)
    old, new = random_model_file(0, SHAPES), random_model_file(1, SHAPES)
    latest = full_release(new, model=MODEL, version=4, key=key, rollout_percent=100.0, lifetime_s=DAY)
    outside = full_release(new, model=MODEL, version=4, key=key, rollout_percent=0.0, lifetime_s=DAY)

    def thread(release, running: bytes) -> SimpleNamespace:
        installed = SimpleNamespace(sha256=hashlib.sha256(running).digest())
        updater = SimpleNamespace(latest_digest=signed_digest(release.envelope), download=None, installed=installed)
        return SimpleNamespace(device=SimpleNamespace(device_id="device-000", updaters={MODEL: updater}))

    assert not _settled(thread(latest, old), latest), "handled, but the download not planned yet"
    assert _settled(thread(latest, new), latest)
    assert _settled(thread(outside, old), outside), "outside the rollout: nothing to download"
