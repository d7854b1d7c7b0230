"""A device's update decisions, fed from an in-memory table of retained messages (no broker)."""

from __future__ import annotations

import errno
import hashlib
import sys
import time
import tracemalloc

import msgpack
import pytest

from codec.keys import generate_signing_key
from codec.status_message import read_status
from codec.topics import manifest_topic
from codec.update_file import UpdateFile
from device_client import staging
from device_client.staging import ROOM_MARGIN
from device_client.store import FileModelStore
from device_client.tflite_runtime import preferred_runtime
from publisher.release.build import update_release
from simulator.testbed import synthetic
from simulator.testbed.history import release_history

MODEL = "digits"


def _running(device) -> bytes:
    return FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes()


def test_a_delta_release_is_applied_exactly(make_device, retained, signing, base_model) -> None:
    device = make_device()
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=512)
    retained.add(release)
    assert retained.pump(device) == release.manifest.chunk_count
    assert _running(device) == expected
    before = time.time()
    wire = device.status().to_json()
    status = read_status(wire)
    assert int(before) <= status.pop("sent") <= time.time(), "whole seconds"
    assert 0 <= status.pop("uptime") < 60, "seconds since the client started"
    assert status == {
        "device": "dev-1", "state": "idle", "progress": None, "last_error": None, "heartbeat": 600, "trust": None,
        "runtime": preferred_runtime(),
        "models": {MODEL: {"version": 2, "sha256": hashlib.sha256(expected).hexdigest()[:16]}},
    }
    assert b"null" not in wire and b" " not in wire.replace(b"ai-edge-litert ", b"").replace(b"tflite-runtime ", b""), \
        "empty keys are left out, and no spaces"


def test_chunks_are_requested_a_window_at_a_time(make_device, retained, signing, base_model) -> None:
    device = make_device()
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    assert release.manifest.chunk_count > device.config.client.chunk_window
    device.handle(manifest_topic(MODEL), release.envelope)
    chunk_topics = [t for t in device.wanted_topics() if "/chunks/" in t]
    assert len(chunk_topics) == device.config.client.chunk_window
    progress = device.status().progress
    assert (device.status().state, progress.chunks_done, progress.chunks_total) == (
        "downloading", 0, release.manifest.chunk_count)


def test_a_full_release_installs_a_model_where_there_was_none(make_device, retained, signing) -> None:
    device = make_device(installed=False)
    model_file = synthetic.random_model_file(7)
    retained.add(synthetic.make_full_release(model_file, MODEL, 1, signing[0]))
    retained.pump(device)
    assert _running(device) == model_file and device.running_models()[MODEL][0] == 1


def test_a_download_resumes_after_a_restart_without_fetching_held_chunks(
    make_device, retained, signing, base_model
) -> None:
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    assert release.manifest.chunk_count > 2 and retained.pump(make_device(), max_chunks=2) == 2
    restarted = make_device()
    assert retained.pump(restarted) == release.manifest.chunk_count - 2
    assert _running(restarted) == expected


def _refused(device, retained, envelope_or_release, expect: str, verified: bool = True) -> dict:
    """Deliver a bad release; check it was refused with ``expect`` and the model kept. One refused before its
    signature verified (``verified=False``) changes nothing but the reported error, which quotes nothing of it."""
    before = _running(device)
    if isinstance(envelope_or_release, bytes):
        retained.messages[manifest_topic(MODEL)] = envelope_or_release
    else:
        retained.add(envelope_or_release)
    retained.pump(device)
    status = read_status(device.status().to_json())
    error = status["last_error"]
    refused_state = "rolled-back" if expect == "rolled-back" else "error"  # an operator's rollback is no error
    assert status["state"] == (refused_state if verified else "idle") and error["code"] == expect, status
    assert _running(device) == before and status["models"][MODEL]["version"] == 1
    if not verified:
        assert error["release"] == 0 and "before its signature verified" in error["message"]
        assert not (device.config.model_dir / ".spool" / MODEL / "refused.json").exists(), "nothing written"
    return error


def test_a_manifest_signed_by_an_unknown_key_is_refused(make_device, retained, base_model) -> None:
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, generate_signing_key())
    _refused(make_device(), retained, release, "unknown-key", verified=False)


def test_an_altered_manifest_is_refused(make_device, retained, signing, base_model) -> None:
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0])
    envelope = msgpack.unpackb(release.envelope)
    envelope["signed"] = envelope["signed"][:-1] + bytes([envelope["signed"][-1] ^ 1])  # the last field's value
    _refused(make_device(), retained, msgpack.packb(envelope), "bad-signature", verified=False)


def test_an_older_version_is_refused(make_device, retained, signing, base_model) -> None:
    device = make_device()
    first, second_base = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0])
    retained.add(first)
    retained.pump(device)
    replay, _ = synthetic.make_delta_release(base_model, 3, MODEL, 2, signing[0])
    before = _running(device)
    retained.add(replay)
    retained.pump(device)
    assert device.status().last_error.code == "old-version" and _running(device) == before == second_base


def test_a_release_for_another_base_is_refused(make_device, retained, signing) -> None:
    release, _ = synthetic.make_delta_release(synthetic.random_model_file(99), 2, MODEL, 2, signing[0])
    _refused(make_device(), retained, release, "wrong-base")


def test_an_expired_manifest_is_refused(make_device, retained, signing, base_model) -> None:
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], lifetime_s=60)
    late = make_device(clock=lambda: time.time() + 120)
    _refused(late, retained, release, "expired")


def test_a_corrupted_chunk_is_reported_and_fetched_again_until_the_genuine_one_is_back(
    make_device, retained, signing, base_model
) -> None:
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    topic = sorted(t for t in retained.messages if "/chunks/" in t)[3]
    genuine = retained.messages[topic]
    retained.messages[topic] = bytes(b ^ 0xFF for b in genuine)
    device = make_device()
    retained.pump(device)
    status = read_status(device.status().to_json())
    assert status["state"] == "downloading" and status["last_error"]["code"] == "bad-chunk"
    assert "chunk 3" in status["last_error"]["message"] and _running(device) == base_model
    updater = device.updaters[MODEL]
    assert updater.resubscribe_due(updater.watch.monotonic() + 0.5) == set(), "the first retry waits a second"
    assert topic in updater.resubscribe_due(updater.watch.monotonic() + 1.0)
    retained.messages[topic] = genuine  # retained again; no new signature needed
    device.handle(topic, genuine)
    retained.pump(device)
    assert _running(device) == expected and device.status().last_error is None
    assert not (device.config.model_dir / ".spool" / MODEL / "refused.json").exists(), "nothing remembered"


def test_a_release_whose_result_differs_from_its_promise_is_refused(
    make_device, retained, signing, base_model
) -> None:
    update = synthetic.random_update(base_model, 2)
    lying = UpdateFile(update.payload, update.decompressed_length, "delta", update.base_sha256, b"\x00" * 32)
    release = update_release(lying, model=MODEL, version=2, key=signing[0], lifetime_s=synthetic.DAY)
    _refused(make_device(), retained, release, "bad-hash")


def test_a_rolled_back_release_is_not_installed_again(make_device, retained, signing, base_model) -> None:
    device = make_device()
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0])
    retained.add(release)
    retained.pump(device)
    FileModelStore(device.config.model_dir).rollback(MODEL)
    _refused(make_device(), retained, release, "rolled-back")


def test_a_release_whose_content_fails_is_not_retried_until_a_new_one_arrives(
    make_device, retained, signing, base_model
) -> None:
    update = synthetic.random_update(base_model, 2)
    lying = UpdateFile(update.payload, update.decompressed_length, "delta", update.base_sha256, b"\x00" * 32)
    release = update_release(lying, model=MODEL, version=2, key=signing[0], lifetime_s=synthetic.DAY,
                             chunk_size=256)
    retained.add(release)
    device = make_device()
    assert retained.pump(device) == release.manifest.chunk_count
    assert device.status().last_error.code == "bad-hash"
    restarted = make_device()
    assert retained.pump(restarted) == 0 and restarted.status().last_error.code == "bad-hash", "remembered"
    fixed, expected = synthetic.make_delta_release(base_model, 4, MODEL, 3, signing[0])
    retained.add(fixed)
    retained.pump(restarted)
    assert _running(restarted) == expected and restarted.status().last_error is None


def test_the_running_release_arriving_again_is_not_an_error(make_device, retained, signing, base_model) -> None:
    device = make_device()
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0])
    retained.add(release)
    retained.pump(device)
    restarted = make_device()
    assert retained.pump(restarted) == 0
    assert restarted.status().state == "idle" and restarted.status().last_error is None


@pytest.mark.parametrize("percent", [0.0, 100.0])
def test_only_devices_in_the_rollout_cohort_download(make_device, retained, signing, base_model, percent) -> None:
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], rollout_percent=percent)
    retained.add(release)
    device = make_device()
    retained.pump(device)
    assert device.running_models()[MODEL][0] == (2 if percent else 1)
    assert device.status().last_error is None



def _release_of(payload: bytes, length: int, base_model: bytes, key) -> object:
    """A correctly signed and chunked release of ``payload``, claiming to update ``base_model``."""
    update = synthetic.random_update(base_model, 2)
    broken = UpdateFile(payload, length, "delta", update.base_sha256, update.target_sha256)
    return update_release(broken, model=MODEL, version=2, key=key, lifetime_s=synthetic.DAY)


def test_a_payload_that_does_not_decompress_is_refused(make_device, retained, signing, base_model) -> None:
    update = synthetic.random_update(base_model, 2)
    damaged = bytearray(update.payload)
    damaged[len(damaged) // 2 :] = bytes(len(damaged) - len(damaged) // 2)
    release = _release_of(bytes(damaged), update.decompressed_length, base_model, signing[0])
    _refused(make_device(), retained, release, "bad-format")


def test_an_update_for_tensors_the_model_lacks_is_refused(make_device, retained, signing, base_model) -> None:
    other = synthetic.random_update(synthetic.random_model_file(3, {"other.weight": (4, 4)}), 1)
    release = _release_of(other.payload, other.decompressed_length, base_model, signing[0])
    _refused(make_device(), retained, release, "model-mismatch")


def test_memory_stays_bounded_while_a_large_release_downloads(make_device, retained, signing) -> None:
    model_file = synthetic.random_model_file(12, {"big.weight": (512, 1024)})  # 2 MiB of incompressible weights
    release = synthetic.make_full_release(model_file, MODEL, 2, signing[0], chunk_size=4096)
    retained.add(release)
    device = make_device()
    device.handle(manifest_topic(MODEL), release.envelope)
    # pathlib interns each chunk file's name; interned before, they cannot grow the interpreter's table of
    # interned strings inside the window (after a long test run a resize of it alone was 1.9 MB)
    names = [sys.intern(str(index)) for index in range(release.manifest.chunk_count)]
    tracemalloc.start()
    try:
        while not device.has_work():
            chunk_topics = {t for t in device.wanted_topics() if "/chunks/" in t}
            assert 0 < len(chunk_topics) <= device.config.client.chunk_window
            for topic in chunk_topics:
                device.handle(topic, retained.messages[topic])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del names
    assert release.manifest.chunk_count > 400 and peak < 256 * 1024, peak
    device.work()
    assert _running(device) == model_file


def test_a_release_the_disk_cannot_hold_is_refused_up_front_and_retried_later(
    make_device, retained, signing, base_model, monkeypatch
) -> None:
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0])
    retained.add(release)
    device = make_device()
    monkeypatch.setattr(device.store, "room", lambda model: 1000)
    retained.pump(device)
    error = device.status().last_error
    assert error.code == "disk-full" and "MiB on disk" in error.message and _running(device) == base_model
    assert not list(device.config.model_dir.glob(".spool/*/*/chunks/*")), "nothing downloaded"
    monkeypatch.undo()
    restarted = make_device()  # space was freed and the client restarted: a disk-full is not remembered
    retained.pump(restarted)
    assert _running(restarted) == expected


def test_chunks_already_spooled_count_as_room_when_a_download_resumes(
    make_device, retained, signing, base_model, monkeypatch
) -> None:
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    assert release.manifest.chunk_count > 2 and retained.pump(make_device(), max_chunks=2) == 2
    held = sum(p.stat().st_size for p in (make_device().config.model_dir / ".spool").glob("*/*/chunks/*"))
    need = release.manifest.payload_length + len(base_model) + ROOM_MARGIN
    restarted = make_device()
    monkeypatch.setattr(restarted.store, "room", lambda model: need - held)  # the free disk the chunks left
    assert held > 0 and retained.pump(restarted) == release.manifest.chunk_count - 2
    assert _running(restarted) == expected


def test_a_fault_of_the_device_while_applying_keeps_the_downloaded_chunks(
    make_device, retained, signing, base_model, monkeypatch
) -> None:
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    device = make_device()

    def disk_fills_up(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(staging, "apply_payload", disk_fills_up)
    assert retained.pump(device) == release.manifest.chunk_count
    assert device.status().last_error.code == "disk-full" and _running(device) == base_model
    monkeypatch.undo()
    restarted = make_device()
    assert retained.pump(restarted) == 0, "the restart applies the spooled release without fetching it again"
    assert _running(restarted) == expected


def test_a_manifest_for_another_model_is_refused(make_device, retained, signing, base_model) -> None:
    release, _ = synthetic.make_delta_release(base_model, 2, "other-model", 2, signing[0])
    _refused(make_device(), retained, release.envelope, "wrong-model")


def test_deltas_published_back_to_back_apply_in_order(make_device, retained, signing, base_model) -> None:
    device = make_device()
    versions = release_history(base_model, MODEL, 4, signing[0], chunk_size=256)
    for release in versions[1].releases:
        retained.add(release, latest=release is versions[1].delta)
    assert retained.pump(device, max_chunks=2) == 2  # v2 is still downloading when v3 and v4 arrive
    for version in versions[2:]:
        for release in version.releases:
            retained.add(release, latest=release is version.delta)
        device.handle(manifest_topic(MODEL), version.delta.envelope)
    assert device.status().state == "downloading" and device.status().last_error is None
    assert [s.version for s in device.updaters[MODEL].download.steps] == [2, 3, 4]
    retained.pump(device)
    assert max(device.updaters[MODEL].fetched.values()) == 1, "v2's chunks were kept, none fetched twice"
    assert _running(device) == versions[-1].model_file
    assert device.running_models()[MODEL][0] == 4 and device.status().last_error is None


def test_a_delta_for_another_base_is_reported_and_the_download_goes_on(
    make_device, retained, signing, base_model
) -> None:
    device = make_device()
    v2, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    stray, _ = synthetic.make_delta_release(synthetic.random_model_file(9), 5, MODEL, 3, signing[0], chunk_size=256)
    retained.add(v2)
    retained.pump(device, max_chunks=2)
    device.handle(manifest_topic(MODEL), stray.envelope)
    status = read_status(device.status().to_json())
    assert status["state"] == "downloading" and status["last_error"]["code"] == "wrong-base"
    retained.messages[manifest_topic(MODEL)] = v2.envelope
    retained.pump(device)
    assert _running(device) == expected and max(device.updaters[MODEL].fetched.values()) == 1
