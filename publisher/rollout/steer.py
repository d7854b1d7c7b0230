"""A new rollout for the latest release: the same manifest with another percent, signed again and published
to the model's and the release's manifest topics. Its chunks are not touched, so widening a 581-byte
update costs one manifest, not the release again (a chunk the manifest carries inline stays in it).

The cohort salt stays, so a wider rollout keeps every device that had the release (a device is in it when
its hash falls below the percent: docs/format.md); percent 0 is a pause: devices that run the release keep
it, the others stop downloading it. The new manifest is signed later than the one it replaces, so a replay
of the wider one after a pause is refused by devices as ``replayed``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from codec.errors import UpdateError
from codec.keys import SigningKey
from codec.manifest import Manifest, inline_chunk, read_manifest, sign_manifest
from codec.topics import manifest_topic, release_manifest_topic
from publisher.errors import ConfigError, NotLatestError, UntrustedKeyError
from publisher.release.guardrails import check_root_allows
from publisher.release.roots import newest_published_root
from publisher.release.session import BrokerSession


def set_rollout(session: BrokerSession, model: str, version: int, percent: float, key: SigningKey, prefix: str,
                cosigners: Sequence[SigningKey] = (), now: float | None = None) -> Manifest:
    """Publish the latest release of ``model`` (which must be ``version``, signed by ``key``) again with
    ``rollout_percent = percent``; returns the new manifest. Raises NotLatestError, UntrustedKeyError."""
    if not 0.0 <= percent <= 100.0:
        raise ConfigError(f"--percent {percent:g} is outside 0..100 (0 pauses the rollout)")
    latest, old = _current(session, model, prefix, key)
    if latest.version != version:
        raise NotLatestError(f"{model}'s latest release is {latest.version}, not {version}: a rollout steers the "
                             "latest release (publish a newer one to replace it)")
    created = max(int(time.time() if now is None else now), latest.created + 1)
    manifest = replace(latest, rollout_percent=float(percent), created=created)
    envelope = sign_manifest(manifest, key, cosigners, inline_chunk(old))
    root = newest_published_root(session, prefix)
    if root is not None:
        check_root_allows(envelope, root)
    topics = [release_manifest_topic(model, version, manifest.payload_kind, prefix), manifest_topic(model, prefix)]
    session.publish_all([(topic, envelope) for topic in topics])
    return manifest


def current_manifest(session: BrokerSession, model: str, prefix: str, key: SigningKey) -> Manifest:
    """The model's latest manifest on the broker, verified with ``key`` (the key that re-signs it)."""
    return _current(session, model, prefix, key)[0]


def _current(session: BrokerSession, model: str, prefix: str, key: SigningKey) -> tuple[Manifest, bytes]:
    """current_manifest, and the envelope it came in."""
    envelope = session.retained([manifest_topic(model, prefix)]).get(manifest_topic(model, prefix))
    if not envelope:
        raise NotLatestError(f"the broker holds no release of {model}; publish one first (`rankcast publish`)")
    verify = key.verify_key
    try:
        return read_manifest(envelope, {verify.key_id: verify}), envelope
    except UpdateError as exc:
        raise UntrustedKeyError(f"{model}'s latest release is not signed by key {verify.key_id} [{exc.code}]: "
                                "steer it with the key that signed it") from None
