"""Noticing a freeze of the manifest a device follows (device_client.updater).

A device keeps on disk the newest verified manifest it has followed for a model (its version and the
time it was signed). A later retained manifest that is older, however genuinely signed, is a replay
(``replayed``): the broker or a man in the middle holds the device on an old release. A retained manifest
that disappears (an empty retained message deletes it) or that does not arrive within ``wait`` seconds
of subscribing, once the device has followed one, is reported too (``manifest-missing``). What a device
cannot see this way (a release it never heard of) is bounded by the manifests' expiry: docs/security.md.
After TUF's client, which treats a freeze as an attack to detect and keeps trusted state that only
newer verified metadata replaces.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codec.manifest import Manifest
from device_client.errors import ManifestMissingError, ReplayedError
from device_client.files import write_atomic

log = logging.getLogger("rankcast.device")


@dataclass(frozen=True, order=True)
class Mark:
    """How new a manifest is: its version, then when it was signed (a release signed again is newer)."""

    version: int
    created: int

    @classmethod
    def of(cls, manifest: Manifest) -> Mark:
        return cls(manifest.version, manifest.created)


class FreezeWatch:
    """The newest manifest followed (kept in ``path``) and the wait for one after subscribing."""

    def __init__(self, path: Path, wait: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path, self.wait, self.monotonic = Path(path), wait, monotonic
        self.mark = self._read()
        self._asked_at: float | None = None

    def arrived(self) -> None:
        """A verified manifest arrived on the topic (the wait after subscribing is over)."""
        self._asked_at = None

    def check(self, manifest: Manifest) -> None:
        """Raise ReplayedError if ``manifest`` (verified, for this device) is older than the newest one
        followed; otherwise it becomes the newest (written to disk when it is newer)."""
        mark = Mark.of(manifest)
        if self.mark is not None and mark < self.mark:
            raise ReplayedError(
                f"the retained manifest went back to release {mark.version} (signed at {mark.created}) after "
                f"release {self.mark.version} (signed at {self.mark.created}): a replay, or a broker restored "
                "from an old backup; the device keeps its model and waits for a newer signed release"
            )
        if self.mark is None or mark > self.mark:
            self.mark = mark
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps({"version": mark.version, "created": mark.created}).encode())

    def deleted(self) -> ManifestMissingError | None:
        """The retained manifest was deleted: the error to report, or None if none was ever followed."""
        self._asked_at = None
        if self.mark is None:
            return None
        return ManifestMissingError(f"the retained manifest (release {self.mark.version} was the newest followed) "
                                    "was deleted from the broker; the device keeps its model and waits for a signed "
                                    "release")

    def subscribed(self) -> None:
        """The manifest topic was (re)subscribed: a retained manifest should arrive within ``wait``."""
        self._asked_at = self.monotonic()

    def overdue(self, now: float | None = None) -> ManifestMissingError | None:
        """Once ``wait`` passed after subscribing with no verified manifest, and one was followed before: the
        error to report (once per subscription); else None."""
        now = self.monotonic() if now is None else now
        if self._asked_at is None or now - self._asked_at < self.wait or self.mark is None:
            return None
        self._asked_at = None
        return ManifestMissingError(f"no signed manifest arrived within {self.wait:.0f} s of subscribing (release "
                                    f"{self.mark.version} was the newest followed): deleted or withheld; the device "
                                    "keeps its model and waits for a signed release")

    def _read(self) -> Mark | None:
        if not self.path.exists():
            return None
        try:
            record = json.loads(self.path.read_text())
            return Mark(int(record["version"]), int(record["created"]))
        except (ValueError, KeyError, TypeError):
            log.warning("%s is damaged; the newest manifest followed is forgotten", self.path)
            return None
