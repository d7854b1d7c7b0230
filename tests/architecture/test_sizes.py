"""Modules short enough to read at once: no Python file of the project or of its tests is over MAX_LINES."""

from __future__ import annotations

MAX_LINES = 400


def test_no_python_file_is_over_the_limit(source_files) -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in source_files.items()}
    assert len(sizes) > 150 and "tests/architecture/test_sizes.py" in sizes
    assert {name: size for name, size in sizes.items() if size > MAX_LINES} == {}
