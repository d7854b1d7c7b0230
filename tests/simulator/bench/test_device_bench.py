"""`rankcast bench device` on a small model: a real device process's memory and disk per release."""

from __future__ import annotations

import json

import pytest

from simulator.bench.device import run_device_bench


@pytest.mark.slow
def test_a_device_never_holds_more_on_disk_than_two_models_and_the_payload(tmp_path, capsys) -> None:
    assert run_device_bench([20], tmp_path) == 0
    costs = {c["release"]: c for c in json.loads((tmp_path / "device.json").read_text())["costs"]}
    assert set(costs) == {"full", "delta"} and costs["full"]["payload_mib"] > 10 > costs["delta"]["payload_mib"]
    for cost in costs.values():
        assert 2 * cost["model_mib"] <= cost["peak_disk_mib"] <= 2 * cost["model_mib"] + cost["payload_mib"] + 1
        assert 0 < cost["peak_extra_rss_mib"] < cost["model_mib"] + 16
    assert "peak extra RSS MiB" in capsys.readouterr().out
