"""A small fleet through a real Mosquitto: real device clients behind link proxies apply a release."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from simulator.fleet.config import FleetConfig
from simulator.fleet.inputs import load_update
from simulator.fleet.links import BUILTIN, LinkProfile, Outage, parse_link_mix
from simulator.fleet.report import write_report
from simulator.fleet.runner import run_fleet
from simulator.testbed.synthetic import write_small_update

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base, update, _ = write_small_update(tmp_path_factory.mktemp("inputs"))
    return load_update(base, update)


def test_ten_devices_on_two_links_apply_both_strategies_and_the_report_has_the_schema(tmp_path, inputs):
    config = FleetConfig(devices=10, links=parse_link_mix("ltem:0.5,3g"), time_scale=4, timeout_s=600,
                         wall_limit_s=60)
    result = run_fleet(config, inputs, tmp_path / "work")
    report = write_report(result, tmp_path / "out")

    assert report["devices"] == 10 and report["applied"] == 20 and report["failed"] == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    assert (tmp_path / "out" / "report.png").stat().st_size > 10_000
    assert set(report) == {"devices", "applied", "failed", "cpu_bound", "strategies"}
    by_name = {s["name"]: s for s in report["strategies"]}
    assert set(by_name) == {"full", "factorised"}
    for entry in by_name.values():
        assert set(entry) == {"name", "update_bytes", "wire_bytes_down", "wire_bytes_up", "applied", "completion_s",
                              "loop_lag", "bytes_per_device"}
        assert entry["applied"] == 10
        assert entry["wire_bytes_down"] > entry["update_bytes"] > 0 and entry["wire_bytes_up"] > 0
        times = entry["completion_s"]
        if entry["loop_lag"]["cpu_bound"]:  # loaded machine: no times rather than wrong ones
            assert times["p50"] is None and report["cpu_bound"]
        else:
            assert 0 < times["p50"] <= times["p95"] <= times["max"]
    assert by_name["factorised"]["update_bytes"] < by_name["full"]["update_bytes"]
    assert by_name["factorised"]["wire_bytes_down"] < by_name["full"]["wire_bytes_down"]
    assert {d.link for d in result.strategies[0].devices} == {"ltem", "3g"}


def test_a_device_whose_link_is_cut_reconnects_and_still_applies_the_release(tmp_path, inputs):
    slow = LinkProfile("flaky", down_bytes_per_s=4000, up_bytes_per_s=4000, latency_s=0.1,
                       outages=tuple(Outage(at_s=t, duration_s=0.5) for t in (1.5, 3.0, 4.5)))
    config = FleetConfig(devices=2, links=parse_link_mix("flaky", {"flaky": slow, **BUILTIN}), time_scale=5,
                         timeout_s=300, wall_limit_s=60)
    result = run_fleet(config, inputs, tmp_path / "work")
    full = result.strategies[0]
    assert full.name == "full" and full.applied == 2
    for device in full.devices:
        assert device.cuts >= 1 and device.reconnects >= 1
        assert device.completion_s > 1.5
        # connections cut mid-packet, and each new one's set-up: every byte still has one category
        assert (device.wire.down.total, device.wire.up.total) == (device.bytes_down, device.bytes_up)
        assert device.wire.down.setup > 0 and device.wire.down.chunk_payload >= full.payload_bytes


def test_a_run_the_simulator_cannot_keep_up_with_is_flagged_and_reports_no_link_times(tmp_path, inputs, monkeypatch):
    from simulator.fleet import clients
    from simulator.fleet.report import report_table

    real_tick = clients.FleetClient.tick

    def loaded(self) -> None:  # the CPU taken by something else, as the loop sees it: every round runs late
        time.sleep(0.3)
        real_tick(self)

    monkeypatch.setattr(clients.FleetClient, "tick", loaded)
    config = FleetConfig(devices=4, links=parse_link_mix("ltem"), time_scale=2, timeout_s=600, wall_limit_s=60)
    one = dataclasses.replace(inputs, strategies=inputs.strategies[-1:])
    result = run_fleet(config, one, tmp_path / "work")
    report = write_report(result, tmp_path / "out")
    assert report["cpu_bound"] and all(s["loop_lag"]["cpu_bound"] for s in report["strategies"])
    assert all(s["completion_s"] == {"p50": None, "p95": None, "max": None} for s in report["strategies"])
    assert report["applied"] == 4 * len(report["strategies"]), "the devices still applied it"
    table = report_table(result)
    assert "WARNING: the simulator could not keep up" in table and "lower --time-scale (now 2)" in table
