"""A release whose manifest envelope carries its one chunk inline: the device spools and applies it as a
chunk from its topic, never subscribes to a chunk topic for it, refuses a wrong one as bad-chunk and an
envelope stripped of it as bad-format."""

from __future__ import annotations

import json

import msgpack

from codec.topics import manifest_topic
from device_client.store import FileModelStore
from simulator.testbed import synthetic
from simulator.testbed.history import release_history

MODEL = "digits"


def _pump_watching(device, retained) -> tuple[int, set[str]]:
    """Deliver as the fixture does; also every topic the device wanted on the way."""
    wanted: set[str] = set()
    original = device.wanted_topics

    def watched() -> set[str]:
        topics = original()
        wanted.update(topics)
        return topics

    device.wanted_topics = watched
    return retained.pump(device), wanted


def _version(device) -> int:
    return json.loads((device.config.model_dir / MODEL / "state.json").read_text())["current"]["version"]


def test_a_small_release_applies_without_a_chunk_topic(make_device, retained, signing, base_model) -> None:
    release, updated = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=4096)
    assert release.inline, "the synthetic update fits inline"
    retained.add(release)
    device = make_device()
    delivered, wanted = _pump_watching(device, retained)
    assert delivered == 0 and not any("/chunks/" in topic for topic in wanted)
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == updated
    assert _version(device) == 2 and device.status().last_error is None


def test_a_wrong_inline_chunk_is_refused_as_a_bad_chunk_and_the_genuine_one_is_taken(
    make_device, retained, signing, base_model
) -> None:
    release, updated = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=4096)
    outer = msgpack.unpackb(release.envelope)
    outer["inline"] = bytes([outer["inline"][0] ^ 1]) + outer["inline"][1:]
    retained.add(release, manifest=msgpack.packb(outer))
    device = make_device()
    _, wanted = _pump_watching(device, retained)
    error = device.status().last_error
    assert error.code == "bad-chunk" and error.release == 0 and device.status().state == "idle"
    assert _version(device) == 1 and not any("/chunks/" in topic for topic in wanted)
    assert not (device.config.model_dir / ".spool" / MODEL / "refused.json").exists(), "not remembered"
    device.handle(manifest_topic(MODEL), release.envelope)  # the publisher's, unaltered
    retained.pump(device)
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == updated


def test_an_envelope_stripped_of_its_inline_chunk_changes_nothing_and_the_genuine_one_is_taken(
    make_device, retained, signing, base_model
) -> None:
    """Without its chunk (on no topic) the release could not finish: the device refuses the envelope as it comes,
    starts no download, and takes the publisher's envelope when it arrives."""
    release, updated = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=4096)
    outer = msgpack.unpackb(release.envelope)
    del outer["inline"]
    retained.add(release, manifest=msgpack.packb(outer))
    device = make_device()
    retained.pump(device)
    assert device.status().last_error.code == "bad-format" and device.updaters[MODEL].download is None
    assert _version(device) == 1
    device.handle(manifest_topic(MODEL), release.envelope)
    retained.pump(device)
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == updated


def test_a_catch_up_through_pinned_manifests_with_inline_chunks(make_device, retained, signing, base_model) -> None:
    history = release_history(base_model, MODEL, 4, signing[0], chunk_size=4096)
    deltas = [version.delta for version in history[1:]]
    assert all(delta.inline for delta in deltas) and history[-1].delta.manifest.index
    for version in history[1:]:
        for release in version.releases:
            retained.add(release, latest=release is version.delta)
    device = make_device()
    delivered, wanted = _pump_watching(device, retained)
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == history[-1].model_file
    assert _version(device) == 4 and device.status().last_error is None
    assert delivered == 0 and any("/releases/2/delta/manifest" in topic for topic in wanted), "pinned, then inline"
