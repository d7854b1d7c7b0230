"""A device with a trust root (device_client.trust): it walks roots in order, refuses the TUF attacks on
roots, takes a rotation without releases published again, keeps a revoked release it runs and says so,
and reconsiders refusals for trust and time when the root or the clock changes. No broker here:
tests/mqtt/test_trust_e2e.py runs the same against Mosquitto."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from codec.keys import generate_signing_key
from codec.manifest import inline_chunk, sign_manifest
from codec.release import Release
from codec.root import sign_root
from codec.topics import BrokerUrl, root_topic
from device_client.config import BrokerSettings, ClientSettings, DeviceConfig
from device_client.device import Device
from device_client.store import FileModelStore
from publisher.trust.edits import RootChange, next_root
from simulator.testbed import synthetic
from simulator.testbed.devices import install_model
from simulator.testbed.trust import TrustSetup, make_trust

MODEL = "digits"
DAY = 86400


@pytest.fixture
def setup(tmp_path: Path) -> TrustSetup:
    return make_trust(tmp_path / "trust")


def _device(tmp_path: Path, setup: TrustSetup, base: bytes, clock=time.time, device_id: str = "dev-1") -> Device:
    model_dir = tmp_path / device_id
    if not (model_dir / MODEL).exists():
        install_model(model_dir, MODEL, base, 1)
    config = DeviceConfig(device_id=device_id, model_dir=model_dir, trusted_keys=(), models=(MODEL,),
                          broker=BrokerSettings(BrokerUrl.parse("mqtt://127.0.0.1:1")),
                          client=ClientSettings(chunk_window=4), trust_root=setup.first)
    return Device(config, clock=clock)


def _roots(device: Device, setup: TrustSetup, versions) -> None:
    for version in versions:
        device.handle(root_topic(version), setup.envelope(version))


def _code(device: Device) -> str | None:
    error = device.status().last_error
    return None if error is None else error.code


def _running(device: Device) -> int:
    return device.running_models()[MODEL][0]


def test_a_rotation_to_a_new_release_key_is_taken_without_publishing_the_release_again(
    tmp_path, setup, retained, base_model
) -> None:
    new_key = generate_signing_key()
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, new_key, chunk_size=256)
    retained.add(release)
    device = _device(tmp_path, setup, base_model)
    assert root_topic(1).rsplit("/", 1)[0] + "/+" in device.wanted_topics()
    retained.pump(device)
    assert _code(device) == "unknown-key" and _running(device) == 1
    setup.change(RootChange(add_release=[new_key.verify_key]))
    _roots(device, setup, [1, 2])
    assert device.status().state == "downloading", "the held manifest is handled again under root v2"
    retained.pump(device)
    assert _running(device) == 2 and device.status().trust == {"root": 2}
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == expected


def test_a_device_offline_across_three_rotations_walks_them_in_any_order(tmp_path, setup, retained, base_model) -> None:
    device = _device(tmp_path, setup, base_model)
    k2 = setup.add_release_key("k2")
    setup.revoke("k1")
    new_root = generate_signing_key()
    setup.change(RootChange(add_root=[new_root.verify_key], remove_root=[setup.root_keys[0].verify_key.key_id]),
                 signers=setup.root_keys[:2] + [new_root])
    _roots(device, setup, [4, 3])
    assert device.trust.root.version == 1, "v3 and v4 wait for v2"
    _roots(device, setup, [2])
    assert device.trust.root.version == 4 and device.trust.revoked == {setup.release["k1"].verify_key.key_id}
    old, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, setup.release["k1"])
    retained.add(old)
    retained.pump(device)
    assert _code(device) == "revoked-key" and _running(device) == 1
    good, _ = synthetic.make_delta_release(base_model, 3, MODEL, 2, k2)
    retained.add(good)
    retained.pump(device)
    assert _running(device) == 2


def test_a_root_below_threshold_or_signed_only_by_its_new_keys_is_refused(tmp_path, setup, base_model) -> None:
    device = _device(tmp_path, setup, base_model)
    intruder = generate_signing_key()
    takeover = next_root(setup.roots[-1], RootChange(add_release=[intruder.verify_key]))
    for signers in (setup.root_keys[:1], [intruder]):  # one of three root keys; a key of its own making
        device.handle(root_topic(2), sign_root(takeover, signers))
        assert device.trust.root.version == 1
        refused = device.status().trust["refused_root"]
        assert (refused["version"], refused["code"]) == (2, "below-threshold")
    new_keys = [generate_signing_key() for _ in range(2)]
    only_new = next_root(setup.roots[-1], RootChange(add_root=[k.verify_key for k in new_keys],
                                                     remove_root=list(setup.roots[-1].root_keys)))
    device.handle(root_topic(2), sign_root(only_new, new_keys))
    assert device.trust.root.version == 1, "the new root keys alone cannot vouch for themselves"
    device.handle(root_topic(2), sign_root(takeover, setup.root_keys[:2]))
    assert device.trust.root.version == 2 and "refused_root" not in device.status().trust


def test_a_root_rollback_is_refused_and_a_restart_keeps_the_newest_root(tmp_path, setup, retained, base_model) -> None:
    device = _device(tmp_path, setup, base_model)
    setup.add_release_key("k2")
    setup.revoke("k1")
    _roots(device, setup, [1, 2, 3])
    assert device.trust.root.version == 3
    device.handle(root_topic(4), setup.envelope(2))  # an old root replayed as the next version
    assert device.trust.root.version == 3 and device.status().trust["refused_root"]["code"] == "bad-root"
    restarted = _device(tmp_path, setup, base_model)  # provisioned with v1; walks the roots it kept
    _roots(restarted, setup, [1, 2])
    assert restarted.trust.root.version == 3
    old, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, setup.release["k1"])
    retained.add(old)
    retained.pump(restarted)
    assert _code(restarted) == "revoked-key" and _running(restarted) == 1


def test_a_device_running_a_revoked_release_keeps_it_and_says_so(tmp_path, setup, retained, base_model) -> None:
    device = _device(tmp_path, setup, base_model)
    first, target = synthetic.make_delta_release(base_model, 2, MODEL, 2, setup.release["k1"])
    retained.add(first)
    retained.pump(device)
    assert _running(device) == 2
    k2 = setup.add_release_key("k2")
    setup.revoke("k1")
    _roots(device, setup, [2, 3])
    assert _running(device) == 2 and device.status().trust == {"root": 3, "revoked": [MODEL]}
    after, _ = synthetic.make_delta_release(target, 5, MODEL, 3, k2)
    retained.add(after)
    retained.pump(device)
    assert _running(device) == 3 and device.status().trust == {"root": 3}


def test_a_revocation_during_a_download_stops_it_before_anything_is_applied(
    tmp_path, setup, retained, base_model
) -> None:
    device = _device(tmp_path, setup, base_model)
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, setup.release["k1"], chunk_size=256)
    retained.add(release)
    retained.pump(device, max_chunks=1)
    assert device.status().state == "downloading"
    setup.add_release_key("k2")
    setup.revoke("k1")
    _roots(device, setup, [2, 3])
    retained.pump(device)
    assert _code(device) == "revoked-key" and _running(device) == 1


def test_a_clock_ahead_refuses_as_expired_and_takes_the_release_once_it_is_set_right(
    tmp_path, setup, retained, base_model
) -> None:
    offset = [45 * DAY]
    device = _device(tmp_path, setup, base_model, clock=lambda: time.time() + offset[0])
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, setup.release["k1"], lifetime_s=30 * DAY)
    retained.add(release)
    retained.pump(device)
    assert _code(device) == "expired" and _running(device) == 1
    device.resubscribe_due()
    assert _code(device) == "expired", "still ahead: still refused"
    offset[0] = 0  # NTP set the clock right
    device.resubscribe_due()
    # its one chunk came inline, so the download may be complete at once
    assert device.status().state in ("downloading", "applying"), "reconsidered without the manifest arriving again"
    retained.pump(device)
    assert _running(device) == 2


def _expired_release(base: bytes, setup: TrustSetup, now: float) -> Release:
    """A release signed ten days ago that expired a day ago."""
    release, _ = synthetic.make_delta_release(base, 2, MODEL, 2, setup.release["k1"])
    manifest = replace(release.manifest, created=int(now - 10 * DAY), expires=int(now - DAY))
    envelope = sign_manifest(manifest, setup.release["k1"], inline=inline_chunk(release.envelope))
    return Release(manifest, envelope, release.chunks)


def test_a_clock_behind_cannot_take_a_release_that_expired_before_a_document_it_verified(
    tmp_path, retained, base_model
) -> None:
    now = time.time()
    setup = make_trust(tmp_path / "trust", now=int(now))  # root v1 signed now: the floor
    behind = lambda: now - 3 * DAY  # noqa: E731 - fake-hwclock restored a time three days old
    device = _device(tmp_path, setup, base_model, clock=behind)
    retained.add(_expired_release(base_model, setup, now))
    retained.pump(device)
    assert _code(device) == "expired" and _running(device) == 1
    assert device.trust.time.behind and device.trust.time.now() >= int(now)
    restarted = _device(tmp_path, setup, base_model, clock=lambda: now - 30 * DAY)
    assert restarted.trust.time.now() >= int(now), "the floor survives a restart"


def test_an_expired_root_holds_every_release_until_a_newer_root_comes(tmp_path, retained, base_model) -> None:
    now = int(time.time())
    setup = make_trust(tmp_path / "trust", lifetime_s=DAY, now=now - 2 * DAY)
    device = _device(tmp_path, setup, base_model)
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, setup.release["k1"])
    retained.add(release)
    retained.pump(device)
    error = device.status().last_error
    assert error.code == "expired" and _running(device) == 1
    setup.change(RootChange(now=now))  # `rankcast trust renew`
    _roots(device, setup, [2])
    retained.pump(device)
    assert _running(device) == 2
