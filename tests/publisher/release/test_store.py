"""The release store: versions on disk with their files, refusing to rewrite history."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from publisher.errors import ReleaseInputError
from publisher.release.store import ReleaseStore
from simulator.testbed import synthetic


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_versions_are_recorded_with_their_files_and_found_by_sha256(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "store")
    v1, v2 = synthetic.random_model_file(1), synthetic.random_model_file(2)
    store.add("digits", 1, _file(tmp_path, "v1.rcw", v1), weights=_file(tmp_path, "base.pt", b"weights"))
    stored = store.add("digits", 2, _file(tmp_path, "v2.rcw", v2), parent=1, update=_file(tmp_path, "v2.rcu", b"rcu"))
    assert [v.version for v in store.versions("digits")] == [1, 2] and store.latest("digits") == stored
    assert stored.model_path.read_bytes() == v2 and stored.model_file == "model.rcw"
    assert stored.path(stored.update).read_bytes() == b"rcu" and stored.weights is None
    assert store.by_sha256("digits", hashlib.sha256(v1).digest()).version == 1
    assert store.versions("other") == [] and store.latest("other") is None
    published = store.record_published(stored, "delta", b"envelope")
    assert store.get("digits", 2).published == {"delta": hashlib.sha256(b"envelope").hexdigest()}
    assert published.manifest("delta") == b"envelope" and published.manifest("full") is None


def test_history_is_not_rewritten(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "store")
    first = store.add("digits", 1, _file(tmp_path, "v1.rcw", b"one"))
    assert store.add("digits", 1, _file(tmp_path, "again.rcw", b"one")) == first, "the same file: a no-op"
    with pytest.raises(ReleaseInputError, match="already in the store"):
        store.add("digits", 1, _file(tmp_path, "other.rcw", b"two"))
    with pytest.raises(ReleaseInputError, match="above its parent"):
        store.add("digits", 2, _file(tmp_path, "v2.rcw", b"two"), parent=2)
    with pytest.raises(ReleaseInputError, match="has: 1"):
        store.get("digits", 7)
    assert not list((tmp_path / "store").rglob(".*.part")), "no half-written file is left"
