"""The publisher's one error hierarchy: stable, distinct codes, and ValueError for callers who catch that."""

from __future__ import annotations

import inspect

from publisher import errors


def test_every_error_is_a_publisher_error_and_a_value_error_with_a_distinct_code():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)]
    assert len(classes) >= 14
    assert all(issubclass(c, errors.PublisherError) and issubclass(c, ValueError) for c in classes)
    assert len({c.code for c in classes}) == len(classes)
