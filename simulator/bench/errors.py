"""The benchmarks' exception hierarchy; each error has a stable ``code`` for `rankcast`'s error line and a
message that says what to do. All subclass ValueError."""

from __future__ import annotations


class BenchError(ValueError):
    """Base of every error a benchmark raises for its inputs or its environment."""

    code = "bench-error"


class MissingDataSetError(BenchError):
    """A data set's package is not installed; the message names the command that installs it."""

    code = "bench-data-missing"
