"""What a device says on the air, through a real broker: a release that comes in quickly costs one status
(its outcome) and no reconnect; a slow download is reported once it has lasted status_interval, with its
progress; the presence, not the status, says offline, so the versions stay readable."""

from __future__ import annotations

from codec.status_message import OFFLINE, ONLINE
from codec.topics import presence_topic, status_filter, status_topic
from publisher.release.fleet_status import read_fleet
from simulator.testbed import synthetic
from simulator.testbed.probe import broker_probe
from simulator.testbed.waits import wait_for


def _online(probe, device_id: str) -> int:
    topic = presence_topic(device_id, probe.prefix)
    return sum(1 for t, payload, _ in probe.messages if t == topic and payload == ONLINE)


def test_a_quick_release_costs_one_status_and_no_reconnect(broker, device_ids, make_device, model_id, signing) -> None:
    device_id = device_ids(1)[0]
    base = synthetic.random_model_file(8)
    with broker_probe(broker) as probe:
        probe.subscribe(status_filter(broker.prefix))
        device = make_device(broker, device_id, model_id, base, status_interval=5.0)
        probe.wait_status(device_id, lambda s: s["state"] == "idle", "the device online")
        mark, connections = probe.seen, _online(probe, device_id)
        release, expected = synthetic.make_delta_release(base, 2, model_id, 2, signing[0])
        broker.publish(release)
        wait_for(lambda: device.version(model_id) == 2, "the release applied")
        status = probe.wait_status(device_id, lambda s: s["models"][model_id]["version"] == 2, "version 2", after=mark)
        assert device.home.model_file(model_id) == expected and status["state"] == "idle"
        sent = [t for t, _, _ in probe.messages[mark:] if t == status_topic(device_id, broker.prefix)]
        assert len(sent) == 1, "downloading and applying lasted less than status_interval: only the outcome"
        assert _online(probe, device_id) == connections, "no reconnect to renew the last will"


def test_a_slow_download_is_reported_with_its_progress(broker, device_ids, make_device, link_proxy, model_id,
                                                        signing) -> None:
    device_id = device_ids(1)[0]
    base = synthetic.random_model_file(64)
    release = synthetic.make_full_release(synthetic.random_model_file(65), model_id, 2, signing[0], chunk_size=1024)
    proxy = link_proxy(broker, 3_000)
    with broker_probe(broker) as probe:
        probe.subscribe(status_filter(broker.prefix))
        device = make_device(broker, device_id, model_id, base, url=proxy.url(tls=True), status_interval=0.5)
        probe.wait_status(device_id, lambda s: s["state"] == "idle", "the device online")
        mark = probe.seen
        broker.publish(release)
        busy = probe.wait_status(device_id, lambda s: s["state"] == "downloading", "downloading reported", after=mark)
        assert busy["progress"]["release"] == 2 and busy["progress"]["chunks_total"] == release.manifest.chunk_count
        wait_for(lambda: device.version(model_id) == 2, "the release applied", timeout=120)
        reports = [s for s in probe.statuses(device_id, mark) if s["state"] == "downloading"]
        assert 1 <= len(reports) < release.manifest.chunk_count, "progress at most every status_interval"


def test_the_presence_says_offline_and_the_status_keeps_the_versions(broker, device_ids, make_device, model_id) -> None:
    device_id = device_ids(1)[0]
    with broker_probe(broker) as probe:
        probe.subscribe(status_topic(device_id, broker.prefix))
        device = make_device(broker, device_id, model_id, synthetic.random_model_file(8), version=3)
        probe.wait_status(device_id, lambda s: s["state"] == "idle", "the device online")
        device.stop()
        offline = probe.wait_status(device_id, lambda s: s["state"] == "offline", "offline")
        assert offline["models"][model_id]["version"] == 3
        assert probe.latest(presence_topic(device_id, broker.prefix)) == OFFLINE
    with broker.publisher() as session:
        row = next(r for r in read_fleet(session, broker.prefix).devices if r.device == device_id)
    assert (row.state, row.versions) == ("offline", {model_id: 3})
