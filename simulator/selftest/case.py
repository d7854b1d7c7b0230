"""What a self-test case is and what it reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    """How one case went: it ran ``runs`` times and held ``held`` times; ``detail`` is one line of figures."""

    name: str
    runs: int
    held: int
    detail: str

    @property
    def ok(self) -> bool:
        return self.runs > 0 and self.held == self.runs


@dataclass(frozen=True)
class Case:
    """A reliability or security check. ``run(workdir, quick)`` does the work in ``workdir``; ``quick`` is
    the shorter version CI runs (fewer repetitions, same checks)."""

    name: str
    group: str
    run: Callable[[Path, bool], Outcome]
