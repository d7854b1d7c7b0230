"""A device notices a freeze (device_client.freeze) and refuses another fleet's releases, and neither
touches the download in progress."""

from __future__ import annotations

import os

import pytest

from codec.manifest import signed_digest
from codec.topics import manifest_topic
from codec.update_file import UpdateFile
from device_client.store import FileModelStore
from publisher.release.build import update_release
from simulator.testbed import synthetic

MODEL = "digits"


def _running(device) -> bytes:
    return FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes()


def test_a_manifest_older_than_the_newest_followed_is_a_replay_and_the_download_goes_on(
    make_device, retained, signing, base_model
) -> None:
    v2, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    v3, expected = synthetic.make_delta_release(base_model, 3, MODEL, 3, signing[0], chunk_size=256)
    retained.add(v2, latest=False)
    retained.add(v3)
    device = make_device()
    assert retained.pump(device, max_chunks=2) == 2
    download = device.updaters[MODEL].download
    device.handle(manifest_topic(MODEL), v2.envelope)  # genuine, newer than the running v1, older than v3
    status = device.status()
    assert status.last_error.code == "replayed" and status.last_error.release == 2
    assert status.state == "downloading" and device.updaters[MODEL].download is download
    device.handle(manifest_topic(MODEL), v3.envelope)  # the followed manifest is back: the freeze is over
    assert device.status().last_error is None
    retained.pump(device)
    assert _running(device) == expected
    assert max(device.updaters[MODEL].fetched.values()) == 1, "no chunk was fetched twice"


def test_a_replay_of_the_running_release_is_noticed_across_restarts(make_device, retained, signing, base_model) -> None:
    v2, on_v2 = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0])
    retained.add(v2)
    retained.pump(device := make_device())
    v3, _ = synthetic.make_delta_release(on_v2, 3, MODEL, 3, signing[0], rollout_percent=0.0)
    device.handle(manifest_topic(MODEL), v3.envelope)  # not rolled out to this device: nothing to do
    assert device.status().state == "idle" and device.status().last_error is None
    for restarted in (device, make_device()):  # the newest manifest followed is kept on disk
        restarted.handle(manifest_topic(MODEL), v2.envelope)
        status = restarted.status()
        assert (status.state, status.last_error.code) == ("error", "replayed") and _running(restarted) == on_v2
        assert "release 3" in status.last_error.message


def test_a_deleted_manifest_is_reported_and_its_return_clears_the_report(
    make_device, retained, signing, base_model
) -> None:
    device = make_device()
    device.handle(manifest_topic(MODEL), b"")
    assert device.status().last_error is None, "nothing was followed yet: nothing went missing"
    v2, on_v2 = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0])
    retained.add(v2)
    retained.pump(device)
    device.handle(manifest_topic(MODEL), b"")
    status = device.status()
    assert (status.state, status.last_error.code, status.last_error.release) == ("error", "manifest-missing", 2)
    device.handle(manifest_topic(MODEL), v2.envelope)  # the same envelope, retained again
    assert device.status().state == "idle" and device.status().last_error is None and _running(device) == on_v2


def test_a_manifest_that_does_not_arrive_after_subscribing_is_reported(
    make_device, retained, signing, base_model
) -> None:
    v2, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0])
    topic = manifest_topic(MODEL)
    fresh = make_device("fresh")
    fresh.subscribed({topic})
    fresh.updaters[MODEL].notice_missing(fresh.updaters[MODEL].freeze.monotonic() + 3600)
    assert fresh.status().last_error is None, "a device that never followed a manifest misses none"
    retained.add(v2)
    retained.pump(device := make_device())
    updater = device.updaters[MODEL]
    device.subscribed({topic})
    device.handle(topic, v2.envelope)  # on time: nothing to report
    updater.notice_missing(updater.freeze.monotonic() + 3600)
    assert device.status().last_error is None
    device.subscribed({topic})  # a reconnect, and the broker has nothing retained
    wait = device.config.client.manifest_wait
    updater.notice_missing(updater.freeze.monotonic() + wait - 1)
    assert device.status().last_error is None
    updater.notice_missing(updater.freeze.monotonic() + wait)
    assert device.status().last_error.code == "manifest-missing"
    assert f"{wait:.0f} s" in device.status().last_error.message


def test_a_release_for_another_fleet_is_refused_and_leaves_the_download_alone(
    make_device, retained, signing, base_model
) -> None:
    v2, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256,
                                                fleet="production")
    staging, _ = synthetic.make_delta_release(base_model, 5, MODEL, 3, signing[0], fleet="staging")
    fleetless, _ = synthetic.make_delta_release(base_model, 6, MODEL, 4, signing[0])
    retained.add(v2)
    device = make_device(fleet="production")
    retained.pump(device, max_chunks=1)
    download = device.updaters[MODEL].download
    for other, named in ((staging, "fleet 'staging'"), (fleetless, "names no fleet")):
        device.handle(manifest_topic(MODEL), other.envelope)
        error = device.status().last_error
        assert error.code == "wrong-fleet" and named in error.message and "'production'" in error.message
        assert device.status().state == "downloading" and device.updaters[MODEL].download is download
    device.handle(manifest_topic(MODEL), v2.envelope)
    retained.pump(device)
    assert _running(device) == expected


@pytest.mark.parametrize("fleet", ["staging", None])
def test_a_device_without_a_fleet_takes_releases_of_any_fleet(
    make_device, retained, signing, base_model, fleet
) -> None:
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], fleet=fleet)
    retained.add(release)
    retained.pump(device := make_device())
    assert _running(device) == expected and release.manifest.fleet == fleet


def test_a_thousand_junk_manifests_cost_no_fsync(make_device, retained, signing, base_model, monkeypatch) -> None:
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    device = make_device()
    retained.pump(device, max_chunks=2)
    syncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd)))
    for number in range(1000):
        device.handle(manifest_topic(MODEL), b"\x82\xa6signed\xc4\x02" + number.to_bytes(2, "big") + b"\xa9signature"
                      + b"\xc4\x40" + bytes(64))
    assert syncs == [] and device.status().state == "downloading"
    assert device.status().last_error.code == "bad-format"
    device.handle(manifest_topic(MODEL), release.envelope)
    retained.pump(device)
    assert _running(device) == expected and syncs, "the genuine release still commits durably"


def test_the_followed_manifest_arriving_late_clears_the_missing_report(
    make_device, retained, signing, base_model
) -> None:
    v2, on_v2 = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0])
    retained.add(v2)
    retained.pump(device := make_device())
    updater, topic = device.updaters[MODEL], manifest_topic(MODEL)
    device.subscribed({topic})  # a reconnect on a slow link: the retained manifest is still on its way
    updater.notice_missing(updater.freeze.monotonic() + device.config.client.manifest_wait)
    assert (device.status().state, device.status().last_error.code) == ("error", "manifest-missing")
    device.handle(topic, v2.envelope)  # the same manifest as before, late
    assert device.status().state == "idle" and device.status().last_error is None and _running(device) == on_v2


@pytest.mark.parametrize("what", ["outside the rollout", "the running file"])
def test_another_fleets_release_is_reported_even_when_there_would_be_nothing_to_do(
    make_device, retained, signing, base_model, what
) -> None:
    if what == "outside the rollout":
        other, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], fleet="staging",
                                                rollout_percent=0.0)
    else:
        other = synthetic.make_full_release(base_model, MODEL, 2, signing[0], fleet="staging")
    device = make_device(fleet="production")
    device.handle(manifest_topic(MODEL), other.envelope)
    assert (device.status().state, device.status().last_error.code) == ("error", "wrong-fleet")


@pytest.mark.parametrize("meanwhile", ["deleted", "replayed"])
def test_a_content_failure_is_remembered_for_its_own_release_whatever_came_meanwhile(
    make_device, retained, signing, base_model, meanwhile
) -> None:
    update = synthetic.random_update(base_model, 3)
    lying = UpdateFile(update.payload, update.decompressed_length, "delta", update.base_sha256, b"\x00" * 32)
    bad = update_release(lying, model=MODEL, version=3, key=signing[0], lifetime_s=synthetic.DAY, chunk_size=256)
    older = synthetic.make_full_release(base_model, MODEL, 2, signing[0])
    retained.add(bad)
    device = make_device()
    retained.pump(device, max_chunks=1)
    retained.messages[manifest_topic(MODEL)] = b"" if meanwhile == "deleted" else older.envelope  # stays so
    retained.pump(device)
    assert device.status().last_error.code == "bad-hash"
    assert device.updaters[MODEL].spool.refusal(signed_digest(bad.envelope)) is not None, "kept under its identity"
    retained.messages[manifest_topic(MODEL)] = bad.envelope  # the refused release is retained again
    for restarted in (device, make_device()):
        restarted.handle(manifest_topic(MODEL), b"")
        assert retained.pump(restarted) == 0, "the refused release is not fetched again"
        assert restarted.status().last_error.code == "bad-hash"
