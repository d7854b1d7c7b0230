"""Publishing a release: its chunks, then its manifests, with the index of the releases devices can catch
up through (what the broker already holds is read by publisher.release.retained)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from codec.keys import VerifyKey
from codec.manifest import Manifest
from codec.release import Release
from codec.release_index import MAX_INDEX_ENTRIES, IndexEntry
from codec.topics import chunk_topic, manifest_topic, release_manifest_topic
from publisher.release.guardrails import check_release, check_root_allows
from publisher.release.retained import read_retained
from publisher.release.roots import newest_published_root
from publisher.release.session import BrokerSession

#: Versions back whose deltas an index lists: a device up to 8 deltas behind (device.toml's default
#: max_chain, the latest release included) can chain.
DEFAULT_INDEX_DEPTH = 7


def release_messages(release: Release, prefix: str, latest: bool = True) -> list[tuple[str, bytes]]:
    """What publishing sends, in order: every chunk (none when the envelope carries it inline), the
    release's own manifest, then (``latest``) the model's manifest.

    The model's manifest comes last, so a device that sees it finds every chunk already retained. A full
    fallback is published with ``latest=False``: devices reach it through the latest manifest's index.
    """
    manifest = release.manifest
    version, kind = manifest.release_key
    chunks = [(chunk_topic(manifest.model, version, kind, i, prefix), c) for i, c in enumerate(release.sent_chunks)]
    messages = [*chunks, (release_manifest_topic(manifest.model, version, kind, prefix), release.envelope)]
    return [*messages, (manifest_topic(manifest.model, prefix), release.envelope)] if latest else messages


def publish_release(
    session: BrokerSession, release: Release, prefix: str, on_ack: Callable[[int], None] | None = None
) -> None:
    """Publish ``release`` retained at QoS 1 and return once the broker acknowledged every message. The
    model's manifest goes out only once everything before it is acknowledged, so a publish interrupted
    before that leaves devices nothing new to see."""
    messages = release_messages(release, prefix)
    session.publish_all(messages[:-1], on_ack=on_ack)
    last = None if on_ack is None else lambda done: on_ack(len(messages) - 1 + done)
    session.publish_all(messages[-1:], on_ack=last)


def publish_with_index(
    session: BrokerSession,
    make: Callable[[tuple[IndexEntry, ...] | None], Release],
    *,
    model: str,
    version: int,
    prefix: str,
    key: VerifyKey,
    fallback: Release | None = None,
    depth: int = DEFAULT_INDEX_DEPTH,
    new_model: bool = False,
    force: bool = False,
    on_ack: Callable[[int], None] | None = None,
) -> Release:
    """Publish the release ``make(index)`` builds as ``version``: its index (``catchup_index``) lists
    ``fallback`` (the full release of the same version, published first) and the deltas of ``model``
    the broker retains from the ``depth`` versions before, only those whose manifests ``key`` signed (a
    publisher pins nothing it cannot vouch for). The release is signed, and checked by
    publisher.release.guardrails.check_release (``new_model``, ``force``), before anything is sent.
    Returns the release published."""
    root = newest_published_root(session, prefix)
    view = read_retained(session, model, prefix, trusted=key if root is None else root.release_trust())
    if fallback is not None and fallback.manifest.release_key != (version, "full"):
        raise ValueError("the fallback must be the full release of the same version")
    older = [(r.manifest, r.envelope) for r in view.releases]
    release = make(catchup_index(older, version, fallback, depth, make(None).manifest.target_sha256))
    if root is not None and not force:
        check_root_allows(release.envelope, root)
    check_release(release.manifest, view.latest, [r.manifest for r in view.releases], new_model=new_model,
                  force=force, rotating=root is not None)
    sent = 0
    if fallback is not None:
        messages = release_messages(fallback, prefix, latest=False)
        session.publish_all(messages, on_ack=on_ack)
        sent = len(messages)
    publish_release(session, release, prefix, on_ack=None if on_ack is None else lambda done: on_ack(sent + done))
    return release


def catchup_index(
    older: Sequence[tuple[Manifest, bytes]], version: int, fallback: Release | None, depth: int = DEFAULT_INDEX_DEPTH,
    target_sha256: bytes | None = None,
) -> tuple[IndexEntry, ...] | None:
    """The index of release ``version``: its full release (``fallback``, or without one the retained full
    release of ``version`` that makes ``target_sha256``: publishing the same release again to widen its
    rollout keeps it) and the ``older`` deltas (manifest and envelope) of the ``depth`` versions below,
    newest first, so a device up to ``depth + 1`` deltas behind can chain; None if empty. Older full
    releases are left out when there is a full one of ``version``: they cost as much and lead to an
    older file."""
    full = None if fallback is None else (fallback.manifest, fallback.envelope)
    if full is None:
        same = [(m, e) for m, e in older if m.release_key == (version, "full") and m.target_sha256 == target_sha256]
        full = same[0] if same else None
    listed = [] if full is None else [index_entry(*full)]
    for manifest, envelope in sorted(older, key=lambda known: known[0].release_key, reverse=True):
        recent = version - depth <= manifest.version < version
        if recent and (full is None or manifest.payload_kind == "delta") and len(listed) < MAX_INDEX_ENTRIES:
            listed.append(index_entry(manifest, envelope))
    return tuple(listed) or None


def index_entry(manifest: Manifest, envelope: bytes) -> IndexEntry:
    """The index entry that pins a release's manifest envelope."""
    return IndexEntry(manifest.version, manifest.payload_kind, manifest.base_sha256, manifest.target_sha256,
                      manifest.payload_length, hashlib.sha256(envelope).digest())


