"""Progress of a fleet run on stderr: a bar per phase (connecting, then each strategy's devices)."""

from __future__ import annotations

import sys


class ProgressBar:
    """A tqdm bar on stderr per phase (connecting, then each strategy)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._bar = None
        self._phase: str | None = None

    def update(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if phase != self._phase:
            self.close()
            from tqdm import tqdm

            label = "connecting" if phase == "connecting" else f"applying ({phase})"
            self._bar = tqdm(total=total, desc=label, unit="dev", file=sys.stderr, leave=True, dynamic_ncols=True,
                             disable=None)  # no bar when stderr is not a terminal
            self._phase = phase
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._phase = None
