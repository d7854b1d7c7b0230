"""The next root: v1 from the keys of a ceremony, and v+1 from v with keys added, revoked or rotated, or
just a later expiry. Each is a whole new Root (codec.root); signing it is the caller's (roots are signed
by a threshold of the current root keys and of the new root's own, after TUF)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from codec.keys import VerifyKey
from codec.root import Root, SignedRoot
from publisher.errors import TrustError

DEFAULT_ROOT_LIFETIME_S = 365 * 86400


def first_root(root_keys: Sequence[VerifyKey], root_threshold: int, release_keys: Sequence[VerifyKey], *,
               release_threshold: int = 1, lifetime_s: int = DEFAULT_ROOT_LIFETIME_S,
               now: int | None = None) -> Root:
    """Root v1: the ceremony's root keys and threshold, and the first release key(s)."""
    created = int(time.time()) if now is None else now
    return _root(1, created, lifetime_s, _by_id(root_keys, "root"), root_threshold, _by_id(release_keys, "release"),
                 release_threshold, {})


@dataclass(frozen=True)
class RootChange:
    """What root v+1 changes; anything left at its default stays as in v."""

    add_release: Sequence[VerifyKey] = ()
    #: Model ids the added release keys may sign for (empty: any model).
    models: frozenset[str] = frozenset()
    revoke: Sequence[str] = ()
    add_root: Sequence[VerifyKey] = ()
    remove_root: Sequence[str] = ()
    root_threshold: int | None = None
    release_threshold: int | None = None
    lifetime_s: int = DEFAULT_ROOT_LIFETIME_S
    now: int | None = field(default=None)


def next_root(current: Root, change: RootChange) -> Root:
    """Root ``current.version + 1`` with ``change`` applied; raises TrustError for a change that names keys
    the root does not hold, or would leave no key."""
    release = dict(current.release_keys)
    models = dict(current.release_models)
    for kid in change.revoke:
        if kid not in release:
            raise TrustError(f"root v{current.version} lists no release key {kid!r} (listed: {', '.join(release)})")
        del release[kid]
        models.pop(kid, None)
    for key in change.add_release:
        if key.key_id in release:
            raise TrustError(f"release key {key.key_id} is already listed in root v{current.version}")
        release[key.key_id] = key
        if change.models:
            models[key.key_id] = frozenset(change.models)
    root = dict(current.root_keys)
    for kid in change.remove_root:
        if kid not in root:
            raise TrustError(f"root v{current.version} lists no root key {kid!r} (listed: {', '.join(root)})")
        del root[kid]
    for key in change.add_root:
        root[key.key_id] = key
    created = int(time.time()) if change.now is None else change.now
    if created < current.created:
        raise TrustError(f"this host's clock ({created}) is before root v{current.version} was made "
                         f"({current.created}): set the clock before signing a root")
    if not release:
        raise TrustError(f"revoking {', '.join(change.revoke)} would leave root v{current.version + 1} without a "
                         "release key: add the new key first (`rankcast trust add-key`), then revoke")
    return _root(current.version + 1, created, change.lifetime_s, root,
                 change.root_threshold or min(current.root_threshold, len(root)), release,
                 change.release_threshold or min(current.release_threshold, max(len(release), 1)), models)


def missing_signatures(signed: SignedRoot, previous: Root | None) -> list[str]:
    """What root ``signed`` still needs before devices take it: one line per set of keys short of its
    threshold (empty when it is complete)."""
    root = signed.root
    needs = [(root.root_keys, root.root_threshold, f"its own root keys (v{root.version})")]
    if previous is not None:
        needs.insert(0, (previous.root_keys, previous.root_threshold, f"root v{previous.version}'s root keys"))
    lines = []
    for keys, threshold, whose in needs:
        have = signed.signers(keys)
        if len(have) < threshold:
            lines.append(f"{threshold - len(have)} more of {whose}: {', '.join(k for k in keys if k not in have)}")
    return lines


def _by_id(keys: Sequence[VerifyKey], what: str) -> dict[str, VerifyKey]:
    found = {key.key_id: key for key in keys}
    if len(found) != len(keys):
        raise TrustError(f"a {what} key is given twice")
    return found


def _root(version: int, created: int, lifetime_s: int, root_keys: Mapping[str, VerifyKey], root_threshold: int,
          release_keys: Mapping[str, VerifyKey], release_threshold: int, models: Mapping[str, frozenset[str]]) -> Root:
    if not root_keys or not release_keys:
        raise TrustError("a root must list at least one root key and one release key")
    if not 1 <= root_threshold <= len(root_keys) or not 1 <= release_threshold <= len(release_keys):
        raise TrustError(f"thresholds must be within 1..the keys listed: root {root_threshold} of {len(root_keys)}, "
                         f"release {release_threshold} of {len(release_keys)}")
    return Root(version, created, created + lifetime_s, dict(root_keys), root_threshold, dict(release_keys),
                release_threshold, dict(models))
