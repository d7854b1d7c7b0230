"""Transfers survive dropped links, broker restarts and device restarts, and never fetch a held chunk twice."""

from __future__ import annotations

import pytest

from simulator.testbed import synthetic
from simulator.testbed.devices import DeviceThread
from simulator.testbed.waits import wait_for

pytestmark = pytest.mark.slow

SLOW = 40_000  # bytes per second from the broker to the device: a transfer of ~1.5 s
HALFWAY = 10


def _big_release(model: str, key) -> tuple:
    """A full release of about 60 KB in 1 KB chunks (random weights do not compress)."""
    model_file = synthetic.random_model_file(11, {"layer.weight": (120, 128)})
    return synthetic.make_full_release(model_file, model, 2, key, chunk_size=1024), model_file


def _held_midway(device: DeviceThread, model: str, chunk_count: int) -> set[int]:
    wait_for(lambda: len(device.home.spooled(model)) >= HALFWAY, f"{HALFWAY} chunks spooled")
    held = device.home.spooled(model)
    assert len(held) < chunk_count, "the transfer finished before it could be interrupted"
    return held


def test_a_dropped_link_resumes_without_fetching_held_chunks(
    broker, device_ids, make_device, link_proxy, model_id, signing
) -> None:
    release, model_file = _big_release(model_id, signing[0])
    proxy = link_proxy(broker, SLOW)
    device = make_device(broker, device_ids(1)[0], model_id, synthetic.random_model_file(1), url=proxy.url(tls=True))
    broker.publish(release)
    held = _held_midway(device, model_id, release.manifest.chunk_count)
    proxy.cut()
    wait_for(lambda: device.version(model_id) == 2, "the release applied after the link came back")
    assert device.home.model_file(model_id) == model_file
    fetched = device.device.updaters[model_id].fetched
    assert all(fetched[2, "full", index] == 1 for index in held), {
        i: fetched[2, "full", i] for i in held if fetched[2, "full", i] != 1}


def test_a_broker_restart_mid_transfer_ends_with_the_release_applied(
    own_broker, make_device, link_proxy, model_id, signing
) -> None:
    release, model_file = _big_release(model_id, signing[0])
    proxy = link_proxy(own_broker, SLOW)
    device = make_device(own_broker, own_broker.device_ids[0], model_id, synthetic.random_model_file(1),
                         url=proxy.url(tls=True))
    own_broker.publish(release)
    held = _held_midway(device, model_id, release.manifest.chunk_count)
    own_broker.stop()
    own_broker.start()
    wait_for(lambda: device.version(model_id) == 2, "the release applied after the broker restarted")
    assert device.home.model_file(model_id) == model_file
    fetched = device.device.updaters[model_id].fetched
    assert all(fetched[2, "full", index] == 1 for index in held)


def test_a_device_restart_mid_transfer_resumes_from_its_spool(
    broker, device_ids, make_device, link_proxy, model_id, signing
) -> None:
    release, model_file = _big_release(model_id, signing[0])
    proxy = link_proxy(broker, SLOW)
    device_id = device_ids(1)[0]
    device = make_device(broker, device_id, model_id, synthetic.random_model_file(1), url=proxy.url(tls=True))
    broker.publish(release)
    held = _held_midway(device, model_id, release.manifest.chunk_count)
    device.stop()
    restarted = make_device(broker, device_id, model_id, None, url=proxy.url(tls=True))
    wait_for(lambda: restarted.version(model_id) == 2, "the release applied after the restart")
    assert restarted.home.model_file(model_id) == model_file
    assert not held & {index for _, _, index in restarted.device.updaters[model_id].fetched}
