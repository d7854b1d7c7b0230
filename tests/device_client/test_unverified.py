"""Manifests that do not verify change nothing on a device: not the download in progress, not its state,
not its disk; the status names the code and quotes nothing of them."""

from __future__ import annotations

import msgpack

from codec.keys import generate_signing_key
from codec.topics import manifest_topic
from device_client.store import FileModelStore
from simulator.testbed import synthetic

MODEL = "digits"


def test_junk_alternating_with_the_genuine_manifest_costs_no_chunk_twice(
    make_device, retained, signing, base_model
) -> None:
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    device = make_device()
    assert retained.pump(device, max_chunks=2) == 2
    foreign, _ = synthetic.make_delta_release(base_model, 3, MODEL, 9, generate_signing_key())
    for junk in (b"\xc1" * 41, foreign.envelope, b"\x82\xa6signed\xc4\x01x\xa9signature\xc4\x40" + bytes(64)):
        device.handle(manifest_topic(MODEL), junk)
        assert device.status().state == "downloading"
        device.handle(manifest_topic(MODEL), release.envelope)
    error = device.status().last_error
    assert error.release == 0 and "before its signature verified" in error.message and "9" not in error.message
    assert not (device.config.model_dir / ".spool" / MODEL / "refused.json").exists()
    retained.pump(device)
    assert max(device.updaters[MODEL].fetched.values()) == 1, "no chunk was fetched twice"
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == expected


def test_one_signed_manifest_in_another_envelope_encoding_is_the_same_release(
    make_device, retained, signing, base_model
) -> None:
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    device = make_device()
    retained.pump(device, max_chunks=1)
    outer = msgpack.unpackb(release.envelope)
    reordered = msgpack.packb({"signature": outer["signature"], "signed": outer["signed"]})  # other key order
    assert reordered != release.envelope
    download = device.updaters[MODEL].download
    device.handle(manifest_topic(MODEL), reordered)
    assert device.updaters[MODEL].download is download, "handled once per signed content"
