"""The same release signed again with another rollout (publisher.rollout.steer): a pause or a narrower
cohort stops a download in progress and keeps the running model; a wider one starts it again; the wider
manifest replayed after a pause is refused."""

from __future__ import annotations

from dataclasses import replace

from codec.manifest import inline_chunk, sign_manifest
from codec.topics import manifest_topic
from device_client.store import FileModelStore
from simulator.testbed import synthetic

MODEL = "digits"


def _resigned(release, key, percent: float, later_by: int) -> bytes:
    manifest = replace(release.manifest, rollout_percent=percent, created=release.manifest.created + later_by)
    return sign_manifest(manifest, key, inline=inline_chunk(release.envelope))


def test_a_pause_stops_the_download_and_a_wider_rollout_resumes_it(make_device, retained, signing, base_model) -> None:
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    device = make_device()
    updater = device.updaters[MODEL]
    retained.pump(device, max_chunks=2)
    assert updater.download is not None and device.status().state == "downloading"
    device.handle(manifest_topic(MODEL), _resigned(release, signing[0], 0.0, later_by=1))
    assert updater.download is None and device.status().state == "idle", "paused: the download stops"
    running = FileModelStore(device.config.model_dir).model_path(MODEL)
    assert running.read_bytes() == base_model
    assert not any("/chunks/" in topic for topic in device.wanted_topics())

    retained.messages[manifest_topic(MODEL)] = _resigned(release, signing[0], 100.0, later_by=2)
    retained.pump(device)
    assert running.read_bytes() == expected and device.status().state == "idle"


def test_the_wider_manifest_replayed_after_a_pause_is_refused(make_device, retained, signing, base_model) -> None:
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    device = make_device()
    retained.pump(device, max_chunks=2)
    device.handle(manifest_topic(MODEL), _resigned(release, signing[0], 0.0, later_by=1))
    device.handle(manifest_topic(MODEL), release.envelope)  # the 100 % manifest, signed before the pause
    status = device.status()
    assert status.last_error is not None and status.last_error.code == "replayed"
    assert device.updaters[MODEL].download is None
