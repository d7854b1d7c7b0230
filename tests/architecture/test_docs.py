"""docs/architecture.md matches the tree: its map names every module of the product and the harness, and
names nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

MAPPED = ("codec", "device_client", "publisher", "broker_config", "simulator", "rankcast")


def mapped_paths(text: str) -> set[str]:
    """The paths the map's code block names: an entry per line, indented two spaces per folder level; a
    folder's description may name its modules too (``baselines/  full_finetune.py, patch.py``), also on
    the lines that continue it."""
    block = text.split("## The tree", 1)[1].split("```")[1]
    folders: list[str] = []
    described = ""  # the folder whose description the next continuation line carries on
    paths = set()
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        if line.startswith(" " * 23):  # a wrapped description
            paths.update(f"{described}/{named}" for named in re.findall(r"\b([a-z_]+\.py)\b", line) if described)
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        entry, _, description = line.strip().partition(" ")
        folders = folders[:depth]
        described = ""
        if entry.endswith("/"):
            folders.append(entry.rstrip("/"))
            described = "/".join(folders)
            paths.add(described)
            paths.update(f"{described}/{named}" for named in re.findall(r"\b([a-z_]+\.py)\b", description))
        else:
            paths.update("/".join([*folders, name]) for name in entry.rstrip(",").split(",") if name)
    return paths


def test_the_map_names_every_module_and_only_modules_that_exist(source_files) -> None:
    root = Path(__file__).resolve().parents[2]
    named = mapped_paths((root / "docs" / "architecture.md").read_text())
    modules = {name for name in source_files if name.split("/")[0] in MAPPED and not name.endswith("__init__.py")}
    assert modules - named == set(), "modules the map does not name"
    assert {path for path in named if not (root / path).exists()} == set(), "the map names paths that do not exist"
