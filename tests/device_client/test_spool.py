"""The chunk spool: only verified chunks are kept, they survive a restart, the payload is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec.errors import ChunkError, IntegrityError
from device_client.spool import Spool
from device_client.status import LastError
from simulator.testbed import synthetic


@pytest.fixture
def release(signing, base_model):
    return synthetic.make_delta_release(base_model, 2, "digits", 2, signing[0], chunk_size=512)[0]


def test_only_verified_chunks_are_kept(tmp_path: Path, release) -> None:
    spooled = Spool(tmp_path).open_all([release.manifest])[0]
    with pytest.raises(ChunkError):
        spooled.put(0, b"x" * len(release.chunks[0]))
    assert spooled.put(0, release.chunks[0]) is True
    assert spooled.put(0, release.chunks[0]) is False
    assert spooled.missing() == list(range(1, release.manifest.chunk_count))


def test_chunks_survive_a_restart_and_damaged_files_are_dropped(tmp_path: Path, release) -> None:
    spooled = Spool(tmp_path).open_all([release.manifest])[0]
    for index in (0, 1, 2):
        spooled.put(index, release.chunks[index])
    (spooled.directory / "chunks" / "1").write_bytes(b"bit rot")
    reopened = Spool(tmp_path).open_all([release.manifest])[0]
    assert reopened.chunks_done == 2 and 1 in reopened.missing()


def test_the_payload_is_read_from_the_chunks_without_a_copy_on_disk(tmp_path: Path, release) -> None:
    spooled = Spool(tmp_path).open_all([release.manifest])[0]
    for index, chunk in enumerate(release.chunks):
        spooled.put(index, chunk)
    assert spooled.complete
    payload = spooled.payload()
    assert len(payload) == release.manifest.payload_length
    pieces = iter(lambda: payload.read(37), b"")
    assert b"".join(pieces) == b"".join(release.chunks) and payload.read() == b""
    assert sorted(p.name for p in spooled.directory.iterdir()) == ["chunks"]
    (spooled.directory / "chunks" / "0").write_bytes(b"changed after arrival")
    with pytest.raises(IntegrityError):
        spooled.payload()


def test_opening_another_download_keeps_its_releases_and_drops_the_others(
    tmp_path: Path, signing, base_model, release
) -> None:
    spool = Spool(tmp_path)
    other = synthetic.make_delta_release(base_model, 3, "digits", 3, signing[0], chunk_size=512)[0]
    first, second = spool.open_all([release.manifest, other.manifest])
    first.put(0, release.chunks[0])
    second.put(0, other.chunks[0])
    assert [r.chunks_done for r in spool.open_all([other.manifest])] == [1], "a release on both paths is resumed"
    assert spool.open_all([release.manifest])[0].chunks_done == 0, "one off the path was dropped"
    assert spool.held_bytes() == 0


def test_a_refusal_is_remembered_for_that_manifest_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    error = LastError("expired", "release 2 expired", 2, "digits")
    spool.refuse(b"a" * 32, error)
    assert Spool(tmp_path).refusal(b"a" * 32) == error
    assert Spool(tmp_path).refusal(b"b" * 32) is None
