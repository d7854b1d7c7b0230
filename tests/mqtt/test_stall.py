"""A chunk the broker lost stalls a download: the device re-subscribes, reports stalled in its status
within its deadline, keeps its spool, and finishes once the chunks are retained again (real Mosquitto)."""

from __future__ import annotations

from dataclasses import replace

from codec.topics import chunk_topic, status_topic
from simulator.testbed import synthetic
from simulator.testbed.devices import QUICK_CLIENT, DeviceHome, DeviceThread
from simulator.testbed.probe import broker_probe
from simulator.testbed.waits import wait_for

STALL_AFTER = 0.5


def test_lost_chunks_stall_a_download_until_they_come_back(broker, device_ids, model_id, signing, tmp_path) -> None:
    base = synthetic.random_model_file(21)
    release, expected = synthetic.make_delta_release(base, 22, model_id, 2, signing[0], chunk_size=256)
    count = release.manifest.chunk_count
    assert count > 4
    broker.publish(release)
    with broker.publisher() as session:  # the broker lost every chunk after the first two
        session.publish_all([(chunk_topic(model_id, 2, "delta", i), b"") for i in range(2, count)])
    device_id = device_ids(1)[0]
    home = DeviceHome.create(tmp_path / device_id, broker, device_id, model_id, signing[1],
                             client=replace(QUICK_CLIENT, chunk_window=2, stall_after=STALL_AFTER))
    home.install(model_id, base, 1)
    with broker_probe(broker) as probe:
        probe.subscribe(status_topic(device_id))
        device = DeviceThread(home)
        try:
            stalled = probe.wait_status(device_id, lambda s: s.get("state") == "stalled", "a stalled status",
                                        timeout=3 * STALL_AFTER + 5)
            assert stalled["progress"]["missing"] == count - 2 and stalled["progress"]["chunks_done"] == 2
            assert home.spooled(model_id) == {0, 1}, "the spool is kept"
            mark = probe.seen
            broker.publish(release)  # the chunks are retained again
            wait_for(lambda: device.version(model_id) == 2, "the download finished")
            assert home.model_file(model_id) == expected
            done = probe.wait_status(device_id, lambda s: s.get("state") == "idle", "idle again", after=mark)
            assert done["progress"] is None and done["sent"] >= stalled["sent"]
        finally:
            device.stop()
