"""The reliability cases (simulator.reliability) in their quick form, each run once per session; the tests
assert on each outcome's facts (codes, counts) and on what the case left on disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from simulator.reliability.case import Case, Outcome


@pytest.fixture(scope="session")
def run_case(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], tuple[Outcome, Path]]:
    """Run ``case`` with quick=True in a directory of its own (once per session); the outcome and the
    directory, whose device and broker files the tests inspect."""
    done: dict[str, tuple[Outcome, Path]] = {}

    def run(case: Case) -> tuple[Outcome, Path]:
        if case.name not in done:
            workdir = tmp_path_factory.mktemp(case.name.replace(" ", "-"))
            done[case.name] = (case.run(workdir, True), workdir)
        return done[case.name]

    return run
