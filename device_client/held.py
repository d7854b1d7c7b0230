"""A manifest refused for trust or time, kept to be handled again (device_client.updater).

Such refusals are never remembered: an unknown or revoked key may be listed by the next trust root, and
a release refused as expired by a clock that ran ahead is good once the clock is set right. So the
latest one is held, with the expiry that refused it, and handed back when the root changes or the
device's time falls below that expiry. Other refusals are the release's own and are remembered
(device_client.verdicts).
"""

from __future__ import annotations

from codec.errors import ExpiredError, SignatureError
from codec.manifest import Manifest


class HeldManifest:
    """At most one envelope, and the expiry that refused it (None: refused for trust)."""

    def __init__(self) -> None:
        self._held: tuple[bytes, float | None] | None = None

    def hold(self, envelope: bytes, exc: BaseException, manifest: Manifest | None, now: float,
             root_expires: float | None) -> None:
        """Keep ``envelope`` if ``exc`` refused it for trust or time; ``manifest`` is it verified (None when
        it did not verify), ``root_expires`` the current trust root's expiry (None in simple mode)."""
        if isinstance(exc, SignatureError):
            self._held = (envelope, None)
        elif isinstance(exc, ExpiredError):
            expired = manifest is not None and now >= manifest.expires
            self._held = (envelope, manifest.expires if expired else root_expires)

    def clear(self) -> None:
        self._held = None

    def due(self, trust_changed: bool, now: float) -> bytes | None:
        """The held envelope, taken out, if the root changed or ``now`` is back below its expiry."""
        if self._held is None:
            return None
        envelope, expires = self._held
        if trust_changed or (expires is not None and now < expires):
            self._held = None
            return envelope
        return None
