"""The trust roots on the broker (publisher.trust makes them): publish each version retained on its own
topic, and read back the newest one that chains from v1 (what a publisher checks its signing key
against; devices check for themselves)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from codec.errors import UpdateError
from codec.root import Root, verify_first_root, verify_next_root
from codec.topics import parse_root_topic, root_filter, root_topic
from publisher.release.session import BrokerSession


def publish_roots(session: BrokerSession, envelopes: Sequence[bytes], prefix: str,
                  on_ack: Callable[[int], None] | None = None) -> None:
    """Publish root v1, v2, ... (``envelopes`` in version order), each retained on its own topic."""
    session.publish_all(((root_topic(i + 1, prefix), env) for i, env in enumerate(envelopes)), on_ack=on_ack)


def newest_published_root(session: BrokerSession, prefix: str) -> Root | None:
    """The newest root the broker retains that chains from its v1 (None when it holds no root v1)."""
    retained = session.retained([root_filter(prefix)])
    found = {parse_root_topic(topic, prefix): payload for topic, payload in retained.items()}
    if 1 not in found:
        return None
    try:
        root = verify_first_root(found[1])
    except UpdateError:
        return None
    while root.version + 1 in found:
        try:
            root = verify_next_root(found[root.version + 1], root).root
        except UpdateError:
            break
    return root
