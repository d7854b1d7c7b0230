"""A small fleet through a real Mosquitto: every byte each link carried lands in exactly one category."""

from __future__ import annotations

import csv

import pytest

from simulator.fleet import runner
from simulator.fleet.config import FleetConfig
from simulator.fleet.inputs import load_update
from simulator.fleet.link_proxy import LinkProxy
from simulator.fleet.links import BUILTIN, LinkProfile, parse_link_mix
from simulator.fleet.publish_counter import PublishCounter
from simulator.fleet.report import report_table, write_report
from simulator.fleet.wire_bytes import CATEGORIES
from simulator.testbed.synthetic import write_small_update

pytestmark = pytest.mark.slow

CLEAN = LinkProfile("clean", down_bytes_per_s=200_000, up_bytes_per_s=200_000, latency_s=0.02)


def test_the_categories_add_up_to_the_proxy_counts_and_chunks_to_the_release(tmp_path, monkeypatch):
    counters: list[PublishCounter] = []

    class CountingProxy(LinkProxy):  # the runner's proxies, each also counting the PUBLISHes it delivers
        def __init__(self, *args, **kwargs) -> None:
            counters.append(PublishCounter())
            super().__init__(*args, down_tap=counters[-1].stream, **kwargs)

    monkeypatch.setattr(runner, "LinkProxy", CountingProxy)
    base, update, _ = write_small_update(tmp_path / "inputs")
    config = FleetConfig(devices=3, links=parse_link_mix("clean", {"clean": CLEAN, **BUILTIN}), time_scale=2,
                         timeout_s=300, wall_limit_s=60, chunk_size=512)
    result = runner.run_fleet(config, load_update(base, update), tmp_path / "work")

    delivered_once = 0
    for strategy, fleet in zip(result.strategies, (counters[:3], counters[3:]), strict=True):
        assert strategy.applied == 3 and strategy.chunks > 1
        for device, counter in zip(strategy.devices, fleet, strict=True):
            assert (device.wire.down.total, device.wire.up.total) == (device.bytes_down, device.bytes_up)
            assert min(device.wire.down.as_dict().values()) >= 0 and min(device.wire.up.as_dict().values()) >= 0
            chunks = [count for topic, count in counter.topics().items() if "/chunks/" in topic]
            if len(chunks) == strategy.chunks and set(chunks) == {1}:
                delivered_once += 1
                assert device.wire.down.chunk_payload == strategy.payload_bytes
            assert device.wire.down.manifest_payload > 0 and device.wire.up.status_payload > 0
            assert device.wire.up.chunk_framing > 0  # the device's PUBACKs, matched to the chunks by packet id
    assert delivered_once, "no device got every chunk exactly once: nothing was checked"

    report = write_report(result, tmp_path / "out")
    for entry, strategy in zip(report["strategies"], result.strategies, strict=True):
        means = entry["bytes_per_device"]
        assert sum(means["down"].values()) == pytest.approx(strategy.wire_bytes_down / 3, abs=0.5)
        assert means["payload_bytes"] == strategy.payload_bytes
        assert means["down_excluding_setup_minus_payload"] == pytest.approx(
            (strategy.wire_bytes_down - sum(d.wire.down.setup + d.wire.down.keepalive for d in strategy.devices)) / 3
            - strategy.payload_bytes, abs=0.5)
    with open(tmp_path / "out" / "devices.csv") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        assert sum(int(row[f"down_{c}"]) for c in CATEGORIES) == int(row["bytes_down"])
        assert sum(int(row[f"up_{c}"]) for c in CATEGORIES) == int(row["bytes_up"])
    table = report_table(result)
    assert "set-up" in table and f"P = {result.strategies[0].payload_bytes:,} B" in table
