"""Catching up: a device on any indexed version reaches the latest in one swap, by the cheapest path."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from codec.manifest import sign_manifest
from device_client.catchup import plan_path
from device_client.store import FileModelStore
from simulator.testbed import synthetic
from simulator.testbed.history import release_history

MODEL = "digits"


@pytest.fixture
def history(signing, base_model):
    """Versions 1..5, each a delta of the one before with its full fallback."""
    return release_history(base_model, MODEL, 5, signing[0], chunk_size=256)


def _retain(retained, versions) -> None:
    for version in versions[1:]:
        for release in version.releases:
            retained.add(release, latest=release is version.delta)


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _on(make_device, device_id: str, model_file: bytes | None, version: int):
    device = make_device(device_id, installed=False)
    if model_file is not None:
        FileModelStore(device.config.model_dir).install(MODEL, _write(device.config.model_dir, model_file), version)
    return device


def _write(folder, data: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "flashed.rcw"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("start", [1, 2, 3, 4])
def test_a_device_on_any_indexed_version_reaches_the_latest_in_one_swap(
    make_device, retained, history, start
) -> None:
    _retain(retained, history)
    device = _on(make_device, f"dev-{start}", history[start - 1].model_file, start)
    latest = history[-1].delta.manifest
    steps = plan_path(latest, _sha(history[start - 1].model_file), start)
    assert [s.version for s in steps] == list(range(start + 1, 6)), "deltas are cheaper than the full file here"
    fetched = retained.pump(device)
    store = FileModelStore(device.config.model_dir)
    state = json.loads((device.config.model_dir / MODEL / "state.json").read_text())
    assert store.model_path(MODEL).read_bytes() == history[-1].model_file
    assert (state["current"]["version"], state["previous"]["version"]) == (5, start), "one swap, from start to 5"
    chunks = sum(-(-s.payload_length // 256) for s in steps)
    assert fetched == chunks and device.status().last_error is None


def test_a_device_older_than_the_history_takes_the_full_release(make_device, retained, history) -> None:
    _retain(retained, history)
    device = _on(make_device, "dev-old", synthetic.random_model_file(99), 1)  # a file no release starts from
    fresh = _on(make_device, "dev-new", None, 0)  # no model at all
    full = history[-1].full.manifest
    for each in (device, fresh):
        assert retained.pump(each) == full.chunk_count
        assert FileModelStore(each.config.model_dir).model_path(MODEL).read_bytes() == history[-1].model_file


def test_a_chain_longer_than_max_chain_takes_the_full_release(history) -> None:
    latest = history[-1].delta.manifest
    cheapest = plan_path(latest, _sha(history[0].model_file), 1)
    assert [s.version for s in cheapest] == [2, 3, 4, 5]
    assert sum(s.payload_length for s in cheapest) < history[-1].full.manifest.payload_length
    steps = plan_path(latest, _sha(history[0].model_file), 1, max_steps=2)
    assert [(s.version, s.kind) for s in steps] == [(5, "full")]


def test_the_cheapest_path_never_costs_more_than_the_full_release(signing, base_model) -> None:
    history = release_history(base_model, MODEL, 5, signing[0], chunk_size=256)
    latest = history[-1].delta.manifest
    full_cost = history[-1].full.manifest.payload_length
    # the same history, but v2→v3 is made to look as large as the whole file: the chain from v1 now costs more
    costly = tuple(replace(e, payload_length=full_cost) if (e.version, e.kind) == (3, "delta") else e
                   for e in latest.index)
    steps = plan_path(replace(latest, index=costly), _sha(base_model), 1)
    assert [(s.version, s.kind) for s in steps] == [(5, "full")]
    from_v3 = plan_path(replace(latest, index=costly), _sha(history[2].model_file), 3)
    assert [s.version for s in from_v3] == [4, 5], "devices past the costly step still take deltas"


def test_without_a_path_the_release_is_refused_with_what_the_device_runs(make_device, retained, signing, base_model):
    history = release_history(base_model, MODEL, 3, signing[0], fallback=False, chunk_size=256)
    for version in history[1:]:
        retained.add(version.delta)
    stranger = _on(make_device, "dev-x", synthetic.random_model_file(98), 1)  # no release starts from its file
    retained.pump(stranger)
    error = stranger.status().last_error
    assert error.code == "wrong-base" and "this device runs version 1" in error.message
    assert "publish a full release of version 3" in error.message


def test_a_step_manifest_other_than_the_pinned_one_is_ignored_until_the_pinned_one_comes(
    make_device, retained, history, signing
) -> None:
    _retain(retained, history)
    v3 = history[2].delta
    topic = f"rankcast/models/{MODEL}/releases/3/delta/manifest"
    forged = sign_manifest(replace(v3.manifest, expires=v3.manifest.expires + 1), signing[0])  # validly signed
    retained.messages[topic] = forged  # a stray or stale message on the step's topic
    device = _on(make_device, "dev-2", history[1].model_file, 2)
    retained.pump(device)
    assert device.status().state == "downloading" and device.status().last_error is None
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == history[1].model_file
    assert not (device.config.model_dir / ".spool" / MODEL / "refused.json").exists()
    retained.messages[topic] = v3.envelope  # the pinned one is retained again (re-subscription delivers it)
    device.handle(topic, v3.envelope)
    retained.pump(device)
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == history[-1].model_file


def test_a_step_whose_result_differs_from_its_manifest_is_refused_and_nothing_is_swapped(
    make_device, retained, history
) -> None:
    _retain(retained, history)
    device = _on(make_device, "dev-3", history[2].model_file, 3)
    tampered = bytearray(history[2].model_file)
    tampered[-1] ^= 1  # the device's file no longer is version 3's, though its state says so
    FileModelStore(device.config.model_dir).model_path(MODEL).write_bytes(bytes(tampered))
    retained.pump(device)
    assert device.status().last_error.code == "bad-hash"
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == bytes(tampered)


def test_versions_rise_along_a_path_and_a_tie_takes_fewer_steps(history) -> None:
    latest = history[-1].delta.manifest
    full = history[-1].full.manifest.payload_length
    tied = tuple(replace(e, payload_length=full - latest.payload_length) if (e.version, e.kind) == (4, "delta")
                 else e for e in latest.index)
    steps = plan_path(replace(latest, index=tied), _sha(history[2].model_file), 3)
    assert [(s.version, s.kind) for s in steps] == [(5, "full")], "4 then 5 costs as much as the full file"
    older = plan_path(latest, _sha(history[1].model_file), 3)  # v2's file on a device that says version 3
    assert [(s.version, s.kind) for s in older] == [(5, "full")], "the delta to 3 is not newer than 3"
    assert plan_path(latest, _sha(history[-1].model_file), 5) is None, "nothing newer than what runs"


@pytest.mark.parametrize("seen_before", [False, True])
def test_an_index_entry_that_misdescribes_its_pinned_manifest_is_refused(
    make_device, retained, history, signing, seen_before
) -> None:
    _retain(retained, history)
    latest = history[-1].delta.manifest
    wrong = tuple(replace(e, payload_length=e.payload_length + 1) if (e.version, e.kind) == (4, "delta") else e
                  for e in latest.index)
    envelope = sign_manifest(replace(latest, index=wrong), signing[0])
    retained.messages[f"rankcast/models/{MODEL}/manifest"] = envelope
    device = _on(make_device, "dev-3", history[2].model_file, 3)
    if seen_before:  # the device took version 4's manifest as the latest one earlier (without applying it yet)
        device.handle(f"rankcast/models/{MODEL}/manifest", history[3].delta.envelope)
    device.handle(f"rankcast/models/{MODEL}/manifest", envelope)
    retained.pump(device, max_chunks=0)  # the step manifests arrive (when they are not known yet), no chunk
    error = device.status().last_error
    assert error.code == "bad-format" and "differs from its entry" in error.message
    retained.pump(device)
    running = FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes()
    # a release that does not apply leaves the download in progress (version 4's) alone
    assert running == (history[3].model_file if seen_before else history[2].model_file)


def test_a_restart_in_the_middle_of_a_chain_resumes_every_step(make_device, retained, history) -> None:
    _retain(retained, history)
    device = _on(make_device, "dev-1", history[0].model_file, 1)
    total = sum(-(-r.manifest.payload_length // 256) for v in history[1:] for r in [v.delta])
    assert retained.pump(device, max_chunks=total // 2) == total // 2  # half of the chain's chunks...
    restarted = make_device("dev-1")  # ...then the power goes: a new process on the same directory
    assert retained.pump(restarted) == total - total // 2, "only the missing chunks are fetched"
    assert max(restarted.updaters[MODEL].fetched.values()) == 1
    assert FileModelStore(restarted.config.model_dir).model_path(MODEL).read_bytes() == history[-1].model_file
