"""The release store: a model's history on the server, so each update builds on the last and every
published release can be listed, checked against and published again.

A directory, one folder per model and version (docs/mqtt.md, "Three updates in a row"):

    STORE/<model>/<version>/
        version.json     parent version, kind, base and target sha256, file names, published manifests
        model.<suffix>   the deployed file at this version (.tflite or .rcw): what devices run after it
        weights.pt       the PyTorch weights at this version (optional: the next update trains on them)
        update.rcu       the update from the parent version (absent for the first version)
        delta.manifest, full.manifest   the envelopes published for this version, once published

Writes go through a temporary file and a rename, so an interrupted command leaves no half file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codec.manifest import validate_id
from codec.model_files import SUFFIXES, file_kind
from publisher.errors import ReleaseInputError

_RECORD = "version.json"


@dataclass(frozen=True)
class StoredVersion:
    """One version of a model in the store; paths are inside its folder."""

    model: str
    version: int
    parent: int | None
    target_sha256: str
    model_file: str
    weights: str | None = None
    update: str | None = None
    #: payload kind -> sha256 (hex) of the manifest envelope published for it.
    published: dict[str, str] = field(default_factory=dict)
    folder: Path = field(default=Path("."), compare=False)

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def model_path(self) -> Path:
        return self.folder / self.model_file

    def manifest(self, kind: str) -> bytes | None:
        """The envelope published for ``kind`` at this version, or None."""
        path = self.folder / f"{kind}.manifest"
        return path.read_bytes() if path.exists() else None


class ReleaseStore:
    """A directory of model versions (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def versions(self, model: str) -> list[StoredVersion]:
        """Every stored version of ``model``, oldest first."""
        folder = self.root / validate_id(model, "model id")
        if not folder.is_dir():
            return []
        found = [self._read(path) for path in folder.iterdir() if path.name.isdigit() and (path / _RECORD).exists()]
        return sorted(found, key=lambda v: v.version)

    def latest(self, model: str) -> StoredVersion | None:
        versions = self.versions(model)
        return versions[-1] if versions else None

    def get(self, model: str, version: int) -> StoredVersion:
        path = self.root / validate_id(model, "model id") / str(int(version))
        if not (path / _RECORD).exists():
            known = ", ".join(str(v.version) for v in self.versions(model)) or "none"
            raise ReleaseInputError(f"the release store {self.root} has no version {version} of {model} "
                                    f"(it has: {known}); `rankcast release init` records the first one")
        return self._read(path)

    def by_sha256(self, model: str, sha256: bytes) -> StoredVersion | None:
        """The stored version whose deployed file has this sha256."""
        return next((v for v in self.versions(model) if v.target_sha256 == sha256.hex()), None)

    def add(self, model: str, version: int, model_file: Path, *, parent: int | None = None,
            weights: Path | None = None, update: Path | None = None) -> StoredVersion:
        """Record ``version`` of ``model``: copies of its deployed file and, when given, its weights and the
        update from ``parent`` that made it. Refuses a version already stored with another file."""
        if version < 1 or (parent is not None and parent >= version):
            raise ReleaseInputError(f"version {version} must be at least 1 and above its parent {parent}")
        data = Path(model_file).read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        folder = self.root / validate_id(model, "model id") / str(version)
        if (folder / _RECORD).exists():
            stored = self._read(folder)
            if stored.target_sha256 != sha256:
                raise ReleaseInputError(f"version {version} of {model} is already in the store with another "
                                        "model file; build the next version instead")
            return stored
        folder.mkdir(parents=True, exist_ok=True)
        name = f"model{SUFFIXES.get(file_kind(Path(model_file)), Path(model_file).suffix or '.bin')}"
        _copy(Path(model_file), folder / name)
        record = StoredVersion(model, version, parent, sha256, name, folder=folder)
        if weights is not None:
            _copy(Path(weights), folder / "weights.pt")
            record = _with(record, weights="weights.pt")
        if update is not None:
            _copy(Path(update), folder / "update.rcu")
            record = _with(record, update="update.rcu")
        self._write(record)
        return record

    def record_published(self, stored: StoredVersion, kind: str, envelope: bytes) -> StoredVersion:
        """Keep the manifest envelope published for ``kind`` at this version."""
        _write_bytes(stored.folder / f"{kind}.manifest", envelope)
        updated = _with(stored, published={**stored.published, kind: hashlib.sha256(envelope).hexdigest()})
        self._write(updated)
        return updated

    def _read(self, folder: Path) -> StoredVersion:
        values = json.loads((folder / _RECORD).read_text())
        if values.get("version") != int(folder.name):
            raise ReleaseInputError(f"{folder / _RECORD} says version {values.get('version')}, its folder "
                                    f"{folder.name}: the store was edited by hand; put it back")
        return StoredVersion(**values, folder=folder)

    def _write(self, record: StoredVersion) -> None:
        values = {k: v for k, v in asdict(record).items() if k != "folder"}
        _write_bytes(record.folder / _RECORD, (json.dumps(values, indent=2, sort_keys=True) + "\n").encode())


def _with(record: StoredVersion, **changes: object) -> StoredVersion:
    values = {k: v for k, v in asdict(record).items() if k != "folder"}
    return StoredVersion(**{**values, **changes}, folder=record.folder)


def _copy(source: Path, target: Path) -> None:
    _write_bytes(target, Path(source).read_bytes())


def _write_bytes(target: Path, data: bytes) -> None:
    """``data`` at ``target`` through a synced temporary file and a rename: whole or not at all."""
    temporary = target.with_name(f".{target.name}.part")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
