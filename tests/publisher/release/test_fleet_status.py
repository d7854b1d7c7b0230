"""`rankcast status` rows: last seen, and devices silent past their heartbeat flagged stale."""

from __future__ import annotations

import json
import time

import pytest

from publisher.release.fleet_status import FleetReport, format_report, parse_status


def _status(device: str, state: str, sent: float | None, heartbeat: float = 600.0) -> tuple[str, bytes]:
    body = {"device": device, "state": state, "models": {"digits": {"version": 3, "sha256": "ab"}},
            "progress": None, "last_error": None}
    if sent is not None:
        body |= {"sent": sent, "heartbeat": heartbeat}
    return f"rankcast/devices/{device}/status", json.dumps(body).encode()


def test_a_device_silent_past_twice_its_heartbeat_is_stale_unless_offline() -> None:
    now = 1_800_000_000.0
    rows = [parse_status(*_status("quiet", "idle", now - 1000)),   # within 2 × 600 + 60
            parse_status(*_status("silent", "idle", now - 1300)),  # past it
            parse_status(*_status("gone", "offline", now - 90000)),  # its will arrived: not stale
            parse_status(*_status("old-client", "idle", None))]  # no times in its status
    report = FleetReport(rows, now)
    assert [row.device for row in report.stale()] == ["silent"]
    text = format_report(report)
    assert "17 min ago" in text and "22 min ago STALE" in text and "1 stale" in text
    assert report.to_dict()["stale"] == 1 and report.to_dict()["devices"][1]["stale"] is True


def test_the_report_counts_trust_roots_and_names_devices_running_a_revoked_release() -> None:
    now = 1_800_000_000.0
    trust = {"a": {"root": 3}, "b": {"root": 3, "revoked": ["digits"]},
             "c": {"root": 2, "refused_root": {"version": 3, "code": "below-threshold"}}}
    rows = []
    for device, info in trust.items():
        topic, payload = _status(device, "idle", now)
        rows.append(parse_status(topic, json.dumps(json.loads(payload) | {"trust": info}).encode()))
    rows.append(parse_status(*_status("simple", "idle", now)))  # trusted_keys: no trust field
    text = format_report(FleetReport(rows, now))
    assert "trust roots: v2: 1, v3: 2" in text
    assert "1 running a release signed by a revoked key" in text and "b (digits)" in text
    assert "c (v3 [below-threshold])" in text


def test_rows_are_keyed_by_the_topic_and_a_status_claiming_another_device_is_flagged_not_counted() -> None:
    now = 1_800_000_000.0
    genuine = parse_status(*_status("pump-1", "idle", now))
    body = json.loads(_status("pump-2", "idle", now)[1]) | {"device": "pump-1"}
    body["models"]["digits"]["version"] = 99
    forged = parse_status("rankcast/devices/pump-2/status", json.dumps(body).encode())
    assert (forged.device, forged.state, forged.last_error["code"]) == ("pump-2", "invalid", "device-mismatch")
    report = FleetReport([genuine, forged], now)
    assert report.versions() == {"digits": {3: 1}}, "version 99, which no device runs, is not counted"
    text = format_report(report)
    assert text.count("pump-1 ") == 1 and "[device-mismatch]" in text


def test_each_row_shows_the_uptime_and_the_report_counts_the_runtimes() -> None:
    now = 1_800_000_000.0
    rows = []
    for device, extra in (("pi-a", {"uptime": 7300, "runtime": "tflite-runtime 2.14.0"}),
                          ("pi-b", {"uptime": 40, "runtime": "ai-edge-litert 2.3.0"}),
                          ("old", {})):
        topic, payload = _status(device, "idle", now)
        rows.append(parse_status(topic, json.dumps(json.loads(payload) | extra).encode()))
    report = FleetReport(rows, now)
    lines = format_report(report).splitlines()
    assert lines[0].split()[:6] == ["DEVICE", "STATE", "VERSIONS", "LAST", "SEEN", "UP"]
    assert [line.rsplit("ago", 1)[1].strip() for line in lines[1:4]] == ["2 h", "40 s", "-"]
    assert report.devices[1].uptime_at(now + 30) == 70, "still running: its uptime grows with the time since"
    assert "TFLite runtimes: ai-edge-litert 2.3.0: 1, none: 1, tflite-runtime 2.14.0: 1" in lines
    assert report.to_dict()["devices"][0]["uptime"] == 7300 and report.to_dict()["devices"][0]["runtime"]


@pytest.mark.parametrize("payload", [
    b'{"device":"pump-1","state":"idle","models":{"m":{"version":Infinity}}}',
    b'{"device":"pump-1","state":"idle","models":{},"sent":NaN}',
    b"[" * 9000,
    b'{"device":"pump-1","state":"idle","models":{},"last_error":"x"}',
    b'{"device":"pump-1","state":"idle","models":{},"progress":[1]}',
    b'{"device":"pump-1","state":"idle","models":{},"runtime":{"a":1}}',
])
def test_a_status_no_reader_should_take_is_one_invalid_row_and_the_others_still_count(payload: bytes) -> None:
    """What one device writes on its own topic cannot make `rankcast status`, `rollout run` or the dashboard
    fail (a number JSON cannot carry, nesting past the parser, an optional key of the wrong type)."""
    now = time.time()
    rows = [parse_status("rankcast/devices/pump-1/status", payload), parse_status(*_status("pump-2", "idle", now))]
    report = FleetReport(rows, now)
    assert [row.state for row in report.devices] == ["invalid", "idle"]
    assert rows[0].last_error["code"] == "bad-status" and report.versions() == {"digits": {3: 1}}
    json.dumps(report.to_dict(), allow_nan=False)
