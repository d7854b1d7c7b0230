"""The file model store: atomic commits, the kept previous file, rollback, and crash recovery."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from device_client.errors import NoPreviousError, NotInstalledError
from device_client.store import FileModelStore


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _install(store: FileModelStore, tmp_path: Path, data: bytes, version: int) -> None:
    source = tmp_path / f"source-{version}"
    source.write_bytes(data)
    store.install("m", source, version)


def _commit(store: FileModelStore, data: bytes, version: int) -> None:
    staged = store.stage("m", copy_current=False)
    staged.write_bytes(data)
    store.commit("m", staged, version, _sha(data))


def test_install_registers_the_running_file(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    _install(store, tmp_path, b"v1", 1)
    current = store.current("m")
    assert (current.version, current.sha256, current.path.read_bytes()) == (1, _sha(b"v1"), b"v1")
    assert store.current("other") is None


def test_commit_swaps_in_the_new_file_and_keeps_the_previous(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    _install(store, tmp_path, b"v1", 1)
    _commit(store, b"v2", 2)
    assert store.current("m").version == 2 and store.model_path("m").read_bytes() == b"v2"
    assert (tmp_path / "models" / "m" / "previous.rcw").read_bytes() == b"v1"
    assert not list((tmp_path / "models" / "m").glob(".staged-*"))


def test_staging_keeps_the_previous_file_when_the_disk_has_room(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    _install(store, tmp_path, b"v1", 1)
    _commit(store, b"v2" * 1000, 2)
    previous = tmp_path / "models" / "m" / "previous.rcw"
    staged = store.stage("m", copy_current=True, needs=len(b"v2" * 1000))
    assert previous.read_bytes() == b"v1" and staged.read_bytes() == b"v2" * 1000
    store.discard(staged)
    assert store.rollback("m").version == 1, "until a release needs its room, rollback stays possible"


def test_staging_gives_up_the_previous_file_when_the_release_needs_its_room(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    _install(store, tmp_path, b"v1", 1)
    _commit(store, b"v2" * 1000, 2)
    previous = tmp_path / "models" / "m" / "previous.rcw"
    staged = store.stage("m", copy_current=True, needs=1 << 60)  # an exbibyte: more than any disk has free
    assert not previous.exists() and staged.read_bytes() == b"v2" * 1000
    with pytest.raises(NoPreviousError):
        store.rollback("m")
    store.commit("m", staged, 3, _sha(staged.read_bytes()))
    assert previous.read_bytes() == b"v2" * 1000, "the file just replaced is kept again"


def test_room_reads_the_state_after_recovering_an_interrupted_commit(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    _install(store, tmp_path, b"v1" * 500, 1)
    state_path = tmp_path / "models" / "m" / "state.json"
    state = json.loads(state_path.read_text())
    staged = store.stage("m", copy_current=False)
    staged.write_bytes(b"v2")
    (tmp_path / "models" / "m" / "previous.rcw").write_bytes(b"v1" * 500)  # as a crash after the link leaves it
    staged.replace(tmp_path / "models" / "m" / "model.rcw")
    state_path.write_text(json.dumps({**state, "pending": {"version": 2, "sha256": _sha(b"v2").hex(),
                                                            "suffix": ".rcw"}}))
    store.room("m")
    recovered = json.loads(state_path.read_text())
    assert "pending" not in recovered, "room() finishes the interrupted commit first"
    assert (recovered["current"]["version"], recovered["previous"]["version"]) == (2, 1)


def test_stage_copies_the_running_model_for_a_delta(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    with pytest.raises(NotInstalledError):
        store.stage("m", copy_current=True)
    _install(store, tmp_path, b"v1", 1)
    staged = store.stage("m", copy_current=True)
    assert staged.read_bytes() == b"v1" and staged.parent == store.model_path("m").parent
    store.discard(staged)
    assert not staged.exists()


def test_rollback_restores_the_previous_file_and_remembers_the_undone_version(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    _install(store, tmp_path, b"v1", 1)
    _commit(store, b"v2", 2)
    restored = store.rollback("m")
    assert (restored.version, store.model_path("m").read_bytes()) == (1, b"v1")
    assert store.current("m").version == 1 and store.rolled_back("m") == 2
    with pytest.raises(NoPreviousError):
        store.rollback("m")
    _install(store, tmp_path, b"v3", 3)
    assert store.rolled_back("m") is None


def test_rollback_refuses_a_previous_file_that_changed(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    _install(store, tmp_path, b"v1", 1)
    _commit(store, b"v2", 2)
    (tmp_path / "models" / "m" / "previous.rcw").write_bytes(b"tampered")
    with pytest.raises(NoPreviousError):
        store.rollback("m")
    assert store.model_path("m").read_bytes() == b"v2"


def _crash_during_commit(store: FileModelStore, tmp_path: Path, swapped: bool) -> None:
    """State as a power cut leaves it: intent recorded, the file swapped or not."""
    _install(store, tmp_path, b"v1", 1)
    state_path = tmp_path / "models" / "m" / "state.json"
    state = json.loads(state_path.read_text())
    state["pending"] = {"version": 2, "sha256": _sha(b"v2").hex()}
    state_path.write_text(json.dumps(state))
    if swapped:
        store.model_path("m").write_bytes(b"v2")


def test_an_interrupted_commit_is_finished_when_the_file_was_swapped(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    _crash_during_commit(store, tmp_path, swapped=True)
    assert store.current("m").version == 2


def test_an_interrupted_commit_is_forgotten_when_the_file_was_not_swapped(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path / "models")
    _crash_during_commit(store, tmp_path, swapped=False)
    assert store.current("m").version == 1
    assert "pending" not in json.loads((tmp_path / "models" / "m" / "state.json").read_text())
