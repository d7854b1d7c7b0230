"""Jittered exponential backoff between reconnect attempts, so a fleet does not reconnect in lockstep."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

_MAX_DOUBLINGS = 32


@dataclass
class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each drawn from [ceiling/2, ceiling]."""

    initial: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** min(self.attempt, _MAX_DOUBLINGS))
        self.attempt += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """After a successful connection: start again from ``initial``."""
        self.attempt = 0
