"""What the broker retains of a model: its latest manifest and every release's own manifest; listing,
pruning and deleting them. Read for tools without verifying signatures (trust is the devices'
business), or, for a publisher about to pin them, only what its own key signed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from codec.errors import UpdateError
from codec.keys import ReleaseKeys, VerifyKey
from codec.manifest import Manifest, read_manifest, read_manifest_unverified, validate_id
from codec.topics import (
    chunk_topic,
    manifest_topic,
    parse_model_topic,
    release_manifest_topic,
    release_manifests_filter,
)
from publisher.errors import CurrentReleaseError, ReleaseInputError
from publisher.release.fleet_status import read_fleet
from publisher.release.session import BrokerSession


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
    """What the broker retains of a model: its latest manifest (None if none or unreadable), its releases,
    and how many release manifests were left out (unreadable, another model's, or not signed by the key
    asked for)."""

    latest: Manifest | None
    releases: list[RetainedRelease]
    ignored: int = 0


def read_retained(session: BrokerSession, model: str, prefix: str,
                  trusted: VerifyKey | ReleaseKeys | None = None) -> RetainedView:
    """The model's latest manifest and retained releases, oldest first (read from their own manifests).

    With ``trusted``, a release counts only if its manifest verifies with that key (or, given the keys of
    the broker's trust root, with those): what a publisher pins in an index it must vouch for. The latest
    manifest is read for its fields only (version, key, payload), which the guardrails compare with.
    """
    found = session.retained([manifest_topic(model, prefix), release_manifests_filter(model, prefix)])
    latest_envelope = found.pop(manifest_topic(model, prefix), b"")
    latest = _manifest(latest_envelope, model)
    pinned = {entry.manifest_sha256 for entry in (latest.index or ())} if latest is not None else set()
    releases = []
    for topic, envelope in found.items():
        named, manifest = parse_model_topic(topic, prefix), _manifest(envelope, model, trusted)
        if manifest is not None and named is not None and (named.version, named.kind) == manifest.release_key:
            releases.append(RetainedRelease(manifest, envelope, envelope == latest_envelope,
                                            hashlib.sha256(envelope).digest() in pinned))
    return RetainedView(latest, sorted(releases, key=lambda r: r.manifest.release_key), len(found) - len(releases))


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
    """A release's retained topics: its chunks' (cleared even when its manifest carries the chunk inline: an
    earlier format-1 publish of the same version may have left it), its manifest's."""
    key = manifest.release_key
    return [*(chunk_topic(manifest.model, *key, i, prefix) for i in range(manifest.chunk_count)),
            release_manifest_topic(manifest.model, *key, prefix)]


def delete_release(
    session: BrokerSession, model: str, prefix: str, version: int | None = None, force: bool = False,
    dry_run: bool = False,
) -> list[str]:
    """Clear every retained topic of release ``version`` of ``model`` (``None``: everything of the model,
    for a mistyped model id), whatever a mistake or an interrupted publish left: chunks without their
    manifest too. Refuses, without ``force``, the current release and any its index lists. Returns the topics
    cleared."""
    base = f"{prefix}/models/{validate_id(model, 'model id')}"
    filters = [f"{base}/#"] if version is None else [f"{base}/releases/{int(version)}/#"]
    found = sorted(session.retained(filters))
    view = read_retained(session, model, prefix)
    in_use = [r for r in view.releases if (r.current or r.listed) and version in (None, r.manifest.version)]
    if not force and (in_use or (view.latest is not None and version in (None, view.latest.version))):
        what = "every release of" if version is None else f"release {version} of"
        raise CurrentReleaseError(f"{what} {model} includes the current release or one its index lists, which "
                                  "devices may be downloading or catching up through; pass --force to delete it "
                                  "anyway")
    if not dry_run and found:
        session.publish_all((topic, b"") for topic in found)
    return found


def _manifest(envelope: bytes, model: str, trusted: VerifyKey | ReleaseKeys | None = None) -> Manifest | None:
    """A retained manifest of ``model``: verified with ``trusted`` if given, else only parsed (for listing;
    trust is the devices' business); None if it is unreadable, another model's or not ``trusted``'s."""
    try:
        manifest = read_manifest_unverified(envelope) if trusted is None else \
            read_manifest(envelope, trusted if isinstance(trusted, ReleaseKeys) else {trusted.key_id: trusted})
    except UpdateError:
        return None
    return manifest if manifest.model == model else None
