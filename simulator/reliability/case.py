"""What a reliability case is and what it reports."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: How many failures a summary line names.
SHOWN_FAILURES = 5


@dataclass(frozen=True)
class Outcome:
    """How one case went: it ran ``runs`` times and held ``held`` times.

    ``detail`` is one line of figures for people; ``facts`` holds the same figures (codes, counts, times)
    as values, for selftest.json and for tests; ``failures`` names each check that did not hold.
    """

    name: str
    runs: int
    held: int
    detail: str
    facts: Mapping[str, object] = field(default_factory=dict)
    failures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.runs > 0 and self.held == self.runs

    def summary(self) -> str:
        """The detail line, followed by the first failures."""
        if not self.failures:
            return self.detail
        return f"{self.detail}; FAILED: {'; '.join(self.failures[:SHOWN_FAILURES])}"


@dataclass(frozen=True)
class Case:
    """A reliability or security check. ``run(workdir, quick)`` does the work in ``workdir``; ``quick`` is
    the shorter version CI runs (fewer repetitions, same checks)."""

    name: str
    group: str
    run: Callable[[Path, bool], Outcome]
