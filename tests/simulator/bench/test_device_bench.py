"""`rankcast bench device` on a small model: a real device process's memory and disk per release."""

from __future__ import annotations

import json

import pytest

from simulator.bench.device import run_device_bench


@pytest.mark.slow
def test_a_release_needs_two_models_and_the_payload_on_disk_and_keeps_the_previous_when_there_is_room(
    tmp_path, capsys
) -> None:
    assert run_device_bench([20], tmp_path) == 0
    costs = {c["release"]: c for c in json.loads((tmp_path / "device.json").read_text())["costs"]}
    assert set(costs) == {"full", "delta"} and costs["full"]["payload_mib"] > 10 > costs["delta"]["payload_mib"]
    for cost in costs.values():
        model, payload = cost["model_mib"], cost["payload_mib"]
        assert 2 * model <= cost["peak_disk_without_previous_mib"] <= 2 * model + payload + 1
        assert cost["peak_disk_mib"] <= 3 * model + payload + 1
        assert 0 < cost["peak_extra_rss_mib"] < model + 16
    delta = costs["delta"]
    assert delta["peak_disk_mib"] - delta["peak_disk_without_previous_mib"] >= delta["model_mib"] - 1, (
        "the disk had room, so the previous file was kept while the delta was staged")
    assert "peak extra RSS MiB" in capsys.readouterr().out
