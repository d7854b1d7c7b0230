"""Releases on the broker: publish one (chunks, then manifests), list the retained ones, prune old ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from codec.errors import UpdateError
from codec.manifest import Manifest, read_manifest_unverified
from codec.release import Release
from codec.topics import (
    chunk_topic,
    manifest_topic,
    parse_model_topic,
    release_manifest_topic,
    release_manifests_filter,
)
from publisher.release.session import BrokerSession


def release_messages(release: Release, prefix: str) -> list[tuple[str, bytes]]:
    """What publishing sends, in order: every chunk, the release's own manifest copy, then the manifest.

    The manifest comes last, so a device that sees it finds every chunk already retained.
    """
    manifest = release.manifest
    chunks = [(chunk_topic(manifest.model, manifest.version, i, prefix), c) for i, c in enumerate(release.chunks)]
    return [
        *chunks,
        (release_manifest_topic(manifest.model, manifest.version, prefix), release.envelope),
        (manifest_topic(manifest.model, prefix), release.envelope),
    ]


def publish_release(
    session: BrokerSession, release: Release, prefix: str, on_ack: Callable[[int], None] | None = None
) -> None:
    """Publish ``release`` retained at QoS 1 and return once the broker acknowledged every message."""
    session.publish_all(release_messages(release, prefix), on_ack=on_ack)


@dataclass(frozen=True)
class RetainedRelease:
    """A release whose chunks the broker keeps; ``current`` if the model's manifest names it."""

    manifest: Manifest
    current: bool


def list_releases(session: BrokerSession, model: str, prefix: str) -> list[RetainedRelease]:
    """The retained releases of ``model``, oldest first (read from their manifest copies)."""
    found = session.retained([manifest_topic(model, prefix), release_manifests_filter(model, prefix)])
    current = _manifest(found.pop(manifest_topic(model, prefix), b""))
    releases = []
    for topic, envelope in found.items():
        named, manifest = parse_model_topic(topic, prefix), _manifest(envelope)
        if manifest is not None and named is not None and named.version == manifest.version:
            same = current is not None and current.version == manifest.version
            releases.append(RetainedRelease(manifest, same))
    return sorted(releases, key=lambda r: r.manifest.version)


def prune_releases(
    session: BrokerSession, model: str, prefix: str, keep: int = 1, dry_run: bool = False
) -> list[RetainedRelease]:
    """Clear the retained chunks and manifest copies of all but the ``keep`` newest releases.

    The release the model's manifest names is always kept. Returns the releases cleared (or, with
    ``dry_run``, that would be).
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    releases = list_releases(session, model, prefix)
    newest = {r.manifest.version for r in releases[-keep:]}
    doomed = [r for r in releases if not r.current and r.manifest.version not in newest]
    if not dry_run:
        session.publish_all(
            (topic, b"")
            for r in doomed
            for topic in (
                *(chunk_topic(model, r.manifest.version, i, prefix) for i in range(r.manifest.chunk_count)),
                release_manifest_topic(model, r.manifest.version, prefix),
            )
        )
    return doomed


def _manifest(envelope: bytes) -> Manifest | None:
    """Fields of a retained manifest, for listing; trust is the devices' business, not the pruner's."""
    try:
        return read_manifest_unverified(envelope)
    except UpdateError:
        return None
