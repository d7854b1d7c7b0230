"""Bad releases on a real broker: each is refused with its own code in the device's retained status, the
device keeps its model and its client, and takes the next good release."""

from __future__ import annotations

import time

import pytest

from codec.keys import generate_signing_key
from codec.release import Release, make_release
from codec.status_message import read_status
from codec.topics import status_topic
from simulator.testbed import synthetic
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceThread
from simulator.testbed.waits import wait_for

pytestmark = pytest.mark.slow


def _status(broker: Broker, device_id: str) -> dict:
    with broker.publisher() as session:
        found = session.retained([status_topic(device_id)])
    return read_status(found[status_topic(device_id)]) if found else {}


def _bad_release(case: str, model: str, base: bytes, key) -> Release:
    if case == "unknown-key":
        return synthetic.make_delta_release(base, 2, model, 3, generate_signing_key())[0]
    if case == "old-version":  # genuinely signed, but older than the installed version 2
        return synthetic.make_delta_release(base, 2, model, 1, key, base_version=0)[0]
    if case == "wrong-base":
        return synthetic.make_delta_release(synthetic.random_model_file(77), 2, model, 3, key)[0]
    if case == "expired":
        update = synthetic.random_update(base, 2)
        return make_release(
            model=model, version=3, payload=update.payload, decompressed_length=update.decompressed_length,
            target_sha256=update.target_sha256, key=key, base_version=2, base_sha256=update.base_sha256,
            created=int(time.time()) - 7200, lifetime_s=3600,
        )
    release, _ = synthetic.make_delta_release(base, 2, model, 3, key, chunk_size=256)
    chunks = list(release.chunks)
    chunks[1] = bytes(b ^ 0x55 for b in chunks[1])
    return Release(release.manifest, release.envelope, chunks)


@pytest.mark.parametrize("case", ["unknown-key", "old-version", "wrong-base", "expired", "bad-chunk"])
def test_a_bad_release_is_refused_loudly_and_the_model_kept(
    broker, device_ids, make_device, model_id, signing, case
) -> None:
    base = synthetic.random_model_file(5)
    device_id = device_ids(1)[0]
    device: DeviceThread = make_device(broker, device_id, model_id, base, version=2)
    broker.publish(_bad_release(case, model_id, base, signing[0]))
    wait_for(lambda: (_status(broker, device_id).get("last_error") or {}).get("code") == case,
             f"the device to report {case}")
    status = _status(broker, device_id)
    # refused before its signature verified: nothing changes and nothing it claims is reported; a bad chunk
    # is a bad message (fetched again) while the release downloads; the other refusals are of the release
    expected = {"unknown-key": ("idle", 0), "old-version": ("error", 1), "wrong-base": ("error", 3),
                "expired": ("error", 3), "bad-chunk": ("downloading", 3)}[case]
    assert (status["state"], status["last_error"]["release"]) == expected
    assert status["models"][model_id]["version"] == 2
    assert device.alive and device.home.model_file(model_id) == base

    good, expected = synthetic.make_delta_release(base, 9, model_id, 4, signing[0])
    broker.publish(good)
    wait_for(lambda: device.version(model_id) == 4, "the next good release applied")
    assert device.home.model_file(model_id) == expected
    wait_for(lambda: _status(broker, device_id).get("last_error") is None, "the error cleared in the status")
