"""A prune while devices download strands nobody: it keeps what the current index lists and what a
device reports downloading, and says so (real Mosquitto, a device behind a slow link)."""

from __future__ import annotations

import json

from codec.topics import status_topic
from codec.update_file import updated_model_file
from publisher.release.build import full_release, update_release
from publisher.release.fleet_status import read_fleet
from publisher.release.publish import publish_with_index
from publisher.release.retained import prune_releases
from simulator.testbed import synthetic
from simulator.testbed.probe import broker_probe
from simulator.testbed.waits import wait_for

SLOW = 6_000  # bytes per second to the device


def _publish(broker, model: str, key, files: list[bytes], version: int, seed: int) -> None:
    update = synthetic.random_update(files[-1], seed)
    files.append(updated_model_file(files[-1], update))
    options = dict(model=model, version=version, key=key, chunk_size=512, lifetime_s=3600)
    with broker.publisher() as session:
        publish_with_index(session, lambda index: update_release(update, index=index, **options), model=model,
                           version=version, prefix="rankcast", key=key.verify_key,
                           fallback=full_release(files[-1], **options),
                           new_model=version == 2)


def test_a_prune_during_a_catch_up_strands_nobody(broker, device_ids, make_device, link_proxy, model_id, signing):
    files = [synthetic.random_model_file(50, {"w": (200, 128)})]
    for version in (2, 3, 4):
        _publish(broker, model_id, signing[0], files, version, 50 + version)
    proxy = link_proxy(broker, SLOW)
    device = make_device(broker, device_ids(1)[0], model_id, files[0], url=proxy.url(tls=True), window=2)
    wait_for(lambda: len(device.home.spooled(model_id)) >= 2, "the catch-up under way")
    with broker.publisher() as session:
        result = prune_releases(session, model_id, "rankcast", keep=1)
    cleared = {(r.manifest.version, r.manifest.payload_kind) for r in result.cleared}
    kept = {(r.manifest.version, r.manifest.payload_kind): why for r, why in result.kept}
    assert cleared == {(2, "full"), (3, "full")}, "older full files: no path needs them"
    assert kept[(2, "delta")].startswith("listed") and kept[(3, "delta")].startswith("listed")
    assert kept[(4, "delta")] == "the current release" and kept[(4, "full")].startswith("listed")
    wait_for(lambda: device.version(model_id) == 4, "the device on version 4 after the prune", timeout=120)
    assert device.home.model_file(model_id) == files[-1]
    assert device.device.status().last_error is None


def test_a_prune_keeps_the_release_a_device_reports_downloading(broker, device_ids, model_id, signing) -> None:
    base = synthetic.random_model_file(60)
    v2, _ = synthetic.make_delta_release(base, 61, model_id, 2, signing[0])
    broker.publish(v2)
    broker.publish(synthetic.make_full_release(synthetic.random_model_file(62), model_id, 3, signing[0]))
    device_id = device_ids(1)[0]
    status = {"device": device_id, "state": "downloading", "models": {model_id: {"version": 1, "sha256": "00"}},
              "progress": {"model": model_id, "release": 2, "chunks_done": 1, "chunks_total": 2}, "last_error": None}
    with broker_probe(broker, device_id) as device:  # what a device that has not seen version 3 yet reports
        device.publish(status_topic(device_id), json.dumps(status).encode(), retain=True)
        with broker.publisher() as session:
            wait_for(lambda: any(r.progress for r in read_fleet(session, "rankcast", model_id).devices),
                     "the status retained")
            result = prune_releases(session, model_id, "rankcast", keep=1)
        device.publish(status_topic(device_id), b"", retain=True)
    assert result.cleared == []
    assert [(r.manifest.version, why) for r, why in result.kept] == [
        (2, "a device reports downloading release 2"), (3, "the current release")]
