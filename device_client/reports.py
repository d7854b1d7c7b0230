"""What one model's updater reports (device_client.updater): its last error, when it was set (a device
reports the most recent of its models'), and the log line that goes with each."""

from __future__ import annotations

import logging
import time

from codec.errors import ChunkError, UpdateError
from device_client.status import LastError, sanitised

log = logging.getLogger("rankcast.device")


class ErrorReport:
    """The last error of one model, and the time.monotonic() it was set at."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.last: LastError | None = None
        self.at = 0.0

    def set(self, error: LastError) -> LastError:
        self.last, self.at = error, time.monotonic()
        return error

    def of(self, exc: BaseException, release: int) -> LastError:
        """Set the error ``exc`` names for ``release`` (its code, or one for an OSError or a bug)."""
        return self.set(LastError.from_exception(exc, self.model, release))

    def report(self, exc: BaseException, release: int) -> None:
        """Set and log ``exc``, for a refusal that changes neither the state nor the download."""
        error = self.of(exc, release)
        log.warning("%s: release %d: %s [%s]", self.model, release, sanitised(str(exc)), error.code)

    def unverified(self, exc: UpdateError, topic: str) -> None:
        """A manifest refused before its signature verified, or whose chunk inline is not the one it signs
        (ChunkError): its code, and nothing it claims (no version, no text from the message)."""
        why = "carries a chunk inline that is not the one it signs" if isinstance(exc, ChunkError) else \
            "was refused before its signature verified"
        self.set(LastError(exc.code, f"a manifest on {topic} {why} [{exc.code}]; the device carries on as it was", 0,
                           self.model))
        log.warning("%s: refused a manifest that did not verify [%s]: %s", self.model, exc.code,
                    sanitised(str(exc)))

    def clear(self, codes: tuple[str, ...] | None = None) -> None:
        """Forget the last error (only if its code is among ``codes``, when given)."""
        if self.last is not None and (codes is None or self.last.code in codes):
            self.last = None
