"""A fleet spread over versions 1..4 by staged rollouts and offline periods ends on version 5, each device
by the cheapest path its start allows, against a real broker (simulator.fleet.catchup)."""

from __future__ import annotations

import json

import pytest

from simulator.fleet.catchup import run_catchup, write_report


@pytest.mark.slow
def test_every_device_reaches_the_latest_by_its_cheapest_path(tmp_path) -> None:
    report = run_catchup(tmp_path / "run", devices=12, last=5, say=lambda line: None)
    by_start = {d.device_id: d for d in report.devices}
    assert len(report.devices) == 13 and {d.start_version for d in report.devices} == {1, 2, 3, 4}
    for device in report.devices:
        assert device.final_version == 5 and device.exact, device
        assert device.fetched_bytes == device.path_bytes, f"{device.device_id} fetched more than its path"
    stranger = by_start["device-012"]
    assert stranger.path == ["5f"] and stranger.fetched_bytes == report.full_bytes, "older than the history: full"
    for device in report.devices[:-1]:
        assert device.path == [str(v) for v in range(device.start_version + 1, 6)], device
        assert device.fetched_bytes < report.full_bytes / 4
    assert report.egress_bytes < report.everyone_full_bytes / 4
    written = json.loads(write_report(report, tmp_path / "out").read_text())
    assert written["egress_bytes"] == report.egress_bytes and len(written["devices"]) == 13
