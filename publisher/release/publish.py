"""Releases on the broker: publish one (chunks, then manifests) with the index of the releases devices can
catch up through, list the retained ones, prune those no index lists."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from codec.errors import UpdateError
from codec.manifest import Manifest, read_manifest_unverified, validate_id
from codec.release import Release
from codec.release_index import MAX_INDEX_ENTRIES, IndexEntry
from codec.topics import (
    chunk_topic,
    manifest_topic,
    parse_model_topic,
    release_manifest_topic,
    release_manifests_filter,
)
from publisher.errors import CurrentReleaseError, ReleaseInputError
from publisher.release.fleet_status import read_fleet
from publisher.release.guardrails import check_release
from publisher.release.session import BrokerSession

#: Versions back whose deltas an index lists: as many as devices chain by default (device.toml max_chain).
DEFAULT_INDEX_DEPTH = 8


def release_messages(release: Release, prefix: str, latest: bool = True) -> list[tuple[str, bytes]]:
    """What publishing sends, in order: every chunk, the release's own manifest, then (``latest``) the
    model's manifest.

    The model's manifest comes last, so a device that sees it finds every chunk already retained. A full
    fallback is published with ``latest=False``: devices reach it through the latest manifest's index.
    """
    manifest = release.manifest
    version, kind = manifest.release_key
    chunks = [(chunk_topic(manifest.model, version, kind, i, prefix), c) for i, c in enumerate(release.chunks)]
    messages = [*chunks, (release_manifest_topic(manifest.model, version, kind, prefix), release.envelope)]
    return [*messages, (manifest_topic(manifest.model, prefix), release.envelope)] if latest else messages


def publish_release(
    session: BrokerSession, release: Release, prefix: str, on_ack: Callable[[int], None] | None = None
) -> None:
    """Publish ``release`` retained at QoS 1 and return once the broker acknowledged every message."""
    session.publish_all(release_messages(release, prefix), on_ack=on_ack)


def publish_with_index(
    session: BrokerSession,
    make: Callable[[tuple[IndexEntry, ...] | None], Release],
    *,
    model: str,
    version: int,
    prefix: str,
    fallback: Release | None = None,
    depth: int = DEFAULT_INDEX_DEPTH,
    new_model: bool = False,
    force: bool = False,
    on_ack: Callable[[int], None] | None = None,
) -> Release:
    """Publish the release ``make(index)`` builds as ``version``: its index (``catchup_index``) lists
    ``fallback`` (the full release of the same version, published first) and the deltas of ``model``
    the broker retains from the ``depth`` versions before. Nothing is sent unless the release passes
    publisher.release.guardrails.check_release (``new_model``, ``force``). Returns the release published."""
    view = read_retained(session, model, prefix)
    check_release(make(None).manifest, view.latest, [r.manifest for r in view.releases], new_model=new_model,
                  force=force)
    if fallback is not None and (fallback.manifest.version, fallback.manifest.payload_kind) != (version, "full"):
        raise ValueError("the fallback must be the full release of the same version")
    retained = [(r.manifest, r.envelope) for r in view.releases]
    sent = 0
    if fallback is not None:
        messages = release_messages(fallback, prefix, latest=False)
        session.publish_all(messages, on_ack=on_ack)
        sent = len(messages)
    release = make(catchup_index(retained, version, fallback, depth))
    publish_release(session, release, prefix, on_ack=None if on_ack is None else lambda done: on_ack(sent + done))
    return release


def catchup_index(
    older: Sequence[tuple[Manifest, bytes]], version: int, fallback: Release | None, depth: int = DEFAULT_INDEX_DEPTH
) -> tuple[IndexEntry, ...] | None:
    """The index of release ``version``: ``fallback`` (its full release) and the ``older`` deltas (manifest
    and envelope) of the ``depth`` versions below ``version``, newest first; None if empty. Older full
    releases are left out when there is a fallback: they cost as much and lead to an older file."""
    listed = [] if fallback is None else [index_entry(fallback.manifest, fallback.envelope)]
    for manifest, envelope in sorted(older, key=lambda known: known[0].release_key, reverse=True):
        recent = version - depth <= manifest.version < version
        if recent and (fallback is None or manifest.payload_kind == "delta") and len(listed) < MAX_INDEX_ENTRIES:
            listed.append(index_entry(manifest, envelope))
    return tuple(listed) or None


def index_entry(manifest: Manifest, envelope: bytes) -> IndexEntry:
    """The index entry that pins a release's manifest envelope."""
    return IndexEntry(manifest.version, manifest.payload_kind, manifest.base_sha256, manifest.target_sha256,
                      manifest.payload_length, hashlib.sha256(envelope).digest())


@dataclass(frozen=True)
class RetainedRelease:
    """A release whose chunks the broker keeps: ``current`` if the model's manifest is its manifest,
    ``listed`` if that manifest's index lists it (devices may be catching up through it)."""

    manifest: Manifest
    envelope: bytes
    current: bool
    listed: bool = False


@dataclass(frozen=True)
class RetainedView:
    """What the broker retains of a model: its latest manifest (None if none) and every release."""

    latest: Manifest | None
    releases: list[RetainedRelease]


def read_retained(session: BrokerSession, model: str, prefix: str) -> RetainedView:
    """The model's latest manifest and retained releases, oldest first (read from their own manifests)."""
    found = session.retained([manifest_topic(model, prefix), release_manifests_filter(model, prefix)])
    latest_envelope = found.pop(manifest_topic(model, prefix), b"")
    latest = _manifest(latest_envelope)
    pinned = {entry.manifest_sha256 for entry in (latest.index or ())} if latest is not None else set()
    releases = []
    for topic, envelope in found.items():
        named, manifest = parse_model_topic(topic, prefix), _manifest(envelope)
        if manifest is not None and named is not None and (named.version, named.kind) == manifest.release_key:
            releases.append(RetainedRelease(manifest, envelope, envelope == latest_envelope,
                                            hashlib.sha256(envelope).digest() in pinned))
    return RetainedView(latest, sorted(releases, key=lambda r: r.manifest.release_key))


def list_releases(session: BrokerSession, model: str, prefix: str) -> list[RetainedRelease]:
    """The retained releases of ``model``, oldest first."""
    return read_retained(session, model, prefix).releases


@dataclass(frozen=True)
class PruneResult:
    """What a prune cleared (or, dry, would clear) and what it kept, each kept release with why."""

    cleared: list[RetainedRelease]
    kept: list[tuple[RetainedRelease, str]]


def prune_releases(
    session: BrokerSession, model: str, prefix: str, keep: int = 1, dry_run: bool = False
) -> PruneResult:
    """Clear the retained chunks and manifests of releases nobody can need: not current, not listed in the
    current manifest's index (devices catch up through those), not the version a device reports
    downloading, and not among the ``keep`` newest versions."""
    if keep < 1:
        raise ReleaseInputError(f"--keep {keep}: keep at least the newest release (1)")
    releases = read_retained(session, model, prefix).releases
    downloading = {row.progress.get("release") for row in read_fleet(session, prefix, model).devices
                   if row.progress and row.progress.get("model") == model}
    newest = sorted({r.manifest.version for r in releases})[-keep:]
    cleared, kept = [], []
    for release in releases:
        reason = _keep_reason(release, downloading, newest, keep)
        if reason is None:
            cleared.append(release)
        else:
            kept.append((release, reason))
    if not dry_run:
        session.publish_all((topic, b"") for r in cleared for topic in _release_topics(r.manifest, prefix))
    return PruneResult(cleared, kept)


def _keep_reason(release: RetainedRelease, downloading: set, newest: list[int], keep: int) -> str | None:
    version = release.manifest.version
    if release.current:
        return "the current release"
    if release.listed:
        return "listed in the current manifest's index (devices catch up through it)"
    if version in downloading:
        return f"a device reports downloading release {version}"
    if version in newest:
        return f"among the {keep} newest versions (--keep)"
    return None


def _release_topics(manifest: Manifest, prefix: str) -> list[str]:
    key = manifest.release_key
    return [*(chunk_topic(manifest.model, *key, i, prefix) for i in range(manifest.chunk_count)),
            release_manifest_topic(manifest.model, *key, prefix)]


def delete_release(
    session: BrokerSession, model: str, prefix: str, version: int | None = None, force: bool = False,
    dry_run: bool = False,
) -> list[str]:
    """Clear every retained topic of release ``version`` of ``model`` (``None``: everything of the model,
    for a mistyped model id), whatever a mistake or an interrupted publish left: chunks without their
    manifest too. Refuses the current release's version without ``force``. Returns the topics cleared."""
    base = f"{prefix}/models/{validate_id(model, 'model id')}"
    filters = [f"{base}/#"] if version is None else [f"{base}/releases/{int(version)}/#"]
    found = sorted(session.retained(filters))
    latest = read_retained(session, model, prefix).latest
    if not force and latest is not None and version in (None, latest.version):
        what = "every release of" if version is None else f"release {version} of"
        raise CurrentReleaseError(f"{what} {model} includes the current release (version {latest.version}), which "
                                  "devices may be downloading; pass --force to delete it anyway")
    if not dry_run and found:
        session.publish_all((topic, b"") for topic in found)
    return found


def _manifest(envelope: bytes) -> Manifest | None:
    """Fields of a retained manifest, for listing; trust is the devices' business, not the pruner's."""
    try:
        return read_manifest_unverified(envelope)
    except UpdateError:
        return None
