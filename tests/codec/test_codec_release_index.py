"""The release index in a manifest: signed and canonical, strict, and pinning older manifests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

import msgpack
import pytest

from codec import FormatError, LimitError, Release, SigningKey, VerifyKey, read_manifest
from codec.errors import IntegrityError
from codec.manifest import SIGNATURE_DOMAIN, read_pinned_manifest
from codec.release_index import MAX_INDEX_ENTRIES, IndexEntry


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _entry(version: int, kind: str = "delta", **changes: object) -> IndexEntry:
    entry = IndexEntry(version, kind, _digest(f"base{version}") if kind == "delta" else None,
                       _digest(f"target{version}"), 1000 * version, _digest(f"manifest{version}{kind}"))
    return replace(entry, **changes)


def test_an_index_is_signed_and_reads_back_as_published(build_release, trusted) -> None:
    index = (_entry(2), _entry(3), _entry(4), _entry(5, "full"))
    release = build_release(index=index)
    manifest = read_manifest(release.envelope, trusted)
    assert manifest.index == index and manifest == release.manifest
    plain = build_release()
    assert "index" not in msgpack.unpackb(msgpack.unpackb(plain.envelope)["signed"]), "absent, not nil"
    assert len(release.envelope) - len(plain.envelope) < 200 * len(index), "an entry costs under 200 bytes"


def _resigned(release: Release, key: SigningKey, index: object) -> bytes:
    """The release's manifest with ``index`` in place of its own, canonically encoded and validly signed."""
    fields = msgpack.unpackb(msgpack.unpackb(release.envelope)["signed"])
    fields["index"] = index
    signed = msgpack.packb(dict(sorted(fields.items())), use_bin_type=True)
    return msgpack.packb({"signed": signed, "signature": key.sign(SIGNATURE_DOMAIN + signed)})


@pytest.mark.parametrize(("index", "error"), [
    ([], FormatError),
    ("entries", FormatError),
    ([_entry(3).to_msgpack(), _entry(2).to_msgpack()], FormatError),  # not sorted
    ([_entry(2).to_msgpack(), _entry(2).to_msgpack()], FormatError),  # twice
    ([_entry(5).to_msgpack()], FormatError),  # the release itself (version 5, delta)
    ([_entry(6, "full").to_msgpack()], FormatError),  # newer than the release
    ([{**_entry(2).to_msgpack(), "kind": "patch"}], FormatError),
    ([{**_entry(2).to_msgpack(), "base_sha256": None}], FormatError),  # a delta without its base
    ([{**_entry(2, "full").to_msgpack(), "base_sha256": _digest("x")}], FormatError),
    ([{**_entry(2).to_msgpack(), "manifest_sha256": b"short"}], FormatError),
    ([{**_entry(2).to_msgpack(), "version": 0}], FormatError),
    ([{**_entry(2).to_msgpack(), "extra": 1}], FormatError),
    ([{**_entry(2).to_msgpack(), "payload_length": 0}], LimitError),
    ([_entry(v).to_msgpack() for v in range(1, MAX_INDEX_ENTRIES + 1)] + [_entry(1, "full").to_msgpack()],
     LimitError),
], ids=["empty", "not-a-list", "unsorted", "twice", "itself", "newer", "bad-kind", "delta-no-base",
        "full-with-base", "short-pin", "version-0", "extra-key", "empty-payload", "too-many"])
def test_a_malformed_index_is_refused_though_validly_signed(
    build_release, signing_key: SigningKey, trusted: dict[str, VerifyKey], index, error
) -> None:
    release = build_release(version=5 if len(index) <= MAX_INDEX_ENTRIES else 40, manifest_format=1)
    with pytest.raises(error):
        read_manifest(_resigned(release, signing_key, index), trusted)


def test_entries_in_another_key_order_are_not_canonical(build_release, signing_key, trusted) -> None:
    shuffled = dict(reversed(list(_entry(2).to_msgpack().items())))
    with pytest.raises(FormatError, match="canonical"):
        read_manifest(_resigned(build_release(manifest_format=1), signing_key, [shuffled]), trusted)


def test_a_pinned_manifest_is_trusted_by_its_pin_and_checked_against_its_entry(
    build_release: Callable[..., Release],
) -> None:
    older = build_release(version=3, base_version=2)
    m = older.manifest
    entry = IndexEntry(3, "delta", m.base_sha256, m.target_sha256, m.payload_length,
                       hashlib.sha256(older.envelope).digest())
    assert read_pinned_manifest(older.envelope, entry, "kws-tiny") == m
    with pytest.raises(IntegrityError, match="pins"):
        read_pinned_manifest(older.envelope, replace(entry, manifest_sha256=_digest("other")), "kws-tiny")
    with pytest.raises(FormatError, match="differs"):
        read_pinned_manifest(older.envelope, entry, "another-model")
