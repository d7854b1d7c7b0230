"""Releases reach devices through a real broker: a fleet at once, late joiners, pruning, fleet status."""

from __future__ import annotations

import hashlib

import pytest

from codec.topics import chunk_topic
from publisher.release.fleet_status import read_fleet
from publisher.release.retained import list_releases, prune_releases
from simulator.testbed import synthetic
from simulator.testbed.waits import WAIT_S, wait_for


@pytest.mark.slow
def test_twenty_devices_receive_and_apply_a_release(broker, device_ids, make_device, model_id, signing) -> None:
    base = synthetic.random_model_file(1)
    fleet = [make_device(broker, device_id, model_id, base) for device_id in device_ids(20)]
    release, expected = synthetic.make_delta_release(base, 2, model_id, 2, signing[0], chunk_size=512)
    broker.publish(release)
    wait_for(lambda: all(d.version(model_id) == 2 for d in fleet), "20 devices at version 2", timeout=2 * WAIT_S)
    assert all(d.home.model_file(model_id) == expected for d in fleet)

    def reported() -> bool:
        with broker.publisher() as session:
            report = read_fleet(session, "rankcast", model_id)
        return report.versions() == {model_id: {2: 20}} and report.states() == {"idle": 20}

    wait_for(reported, "20 idle devices reporting version 2")


def test_a_device_that_first_connects_after_publication_gets_the_release(
    broker, device_ids, make_device, model_id, signing
) -> None:
    base = synthetic.random_model_file(2)
    release, expected = synthetic.make_delta_release(base, 3, model_id, 2, signing[0])
    broker.publish(release)
    late = make_device(broker, device_ids(1)[0], model_id, base)
    wait_for(lambda: late.version(model_id) == 2, "the late device at version 2")
    assert late.home.model_file(model_id) == expected


def test_a_first_deployment_ships_the_whole_model(broker, device_ids, make_device, model_id, signing) -> None:
    device = make_device(broker, device_ids(1)[0], model_id, base=None)
    model_file = synthetic.random_model_file(3)
    broker.publish(synthetic.make_full_release(model_file, model_id, 1, signing[0], chunk_size=1024))
    wait_for(lambda: device.version(model_id) == 1, "the first model installed")
    assert device.home.model_file(model_id) == model_file


def test_pruning_clears_superseded_chunks_and_keeps_the_current_release(
    broker, device_ids, make_device, model_id, signing
) -> None:
    base = synthetic.random_model_file(4)
    first, second_base = synthetic.make_delta_release(base, 5, model_id, 2, signing[0], chunk_size=256)
    second, expected = synthetic.make_delta_release(second_base, 6, model_id, 3, signing[0], chunk_size=256)
    broker.publish(first)
    broker.publish(second)
    with broker.publisher() as session:
        assert [(r.manifest.version, r.current) for r in list_releases(session, model_id, "rankcast")] == [
            (2, False), (3, True)]
        assert [r.manifest.version for r in prune_releases(session, model_id, "rankcast").cleared] == [2]
        left = session.retained([f"rankcast/models/{model_id}/releases/+/+/chunks/+"])
    assert chunk_topic(model_id, 2, "delta", 0) not in left and chunk_topic(model_id, 3, "delta", 0) in left
    assert len(left) == second.manifest.chunk_count
    device = make_device(broker, device_ids(1)[0], model_id, second_base, version=2)
    wait_for(lambda: device.version(model_id) == 3, "a device catching up after the prune")
    assert hashlib.sha256(device.home.model_file(model_id)).digest() == hashlib.sha256(expected).digest()
