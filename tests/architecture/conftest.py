"""The source tree as data for the architecture tests: every module of the project and what it imports."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("codec", "device_client", "publisher", "simulator", "broker_config", "rankcast")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    imports: frozenset[str]  # every module of ours it imports, at the top or inside a function


def _imports(path: Path) -> frozenset[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return frozenset(name for name in found if name.split(".")[0] in PACKAGES)


def project_modules() -> list[Module]:
    modules = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules.append(Module(name, path, _imports(path)))
    return modules


@pytest.fixture(scope="session")
def modules() -> list[Module]:
    return project_modules()


@pytest.fixture(scope="session")
def source_files() -> dict[str, Path]:
    """Every Python file of the project and of its tests, by its path from the repository root."""
    paths = [path for folder in (*PACKAGES, "tests") for path in sorted((ROOT / folder).rglob("*.py"))]
    return {path.relative_to(ROOT).as_posix(): path for path in paths}
