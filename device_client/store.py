"""The models a device runs: a small interface, and a store of model files in a directory.

Layout per model (FileModelStore): MODEL_DIR/<model>/model<suffix> is the file the application loads,
previous<suffix> the file it replaced (for rollback), state.json the versions, sha256s and suffixes of
both. The suffix follows each file's content (codec.model_files): ``.tflite`` for a TFLite flatbuffer,
``.rcw`` for RCW, the store's default suffix for anything else; a full release may change it.
A commit first records its intent in state.json ("pending"), then links the running file to previous,
renames the staged file over the running one and fsyncs the directory, then records the result. After a
crash, ``current()`` finishes or forgets a pending commit by hashing the running file, so state.json
always describes the bytes on disk.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from codec.apply import SlotReader, file_sha256
from codec.model_files import SUFFIXES as KIND_SUFFIXES
from codec.model_files import file_kind, read_model_slots
from device_client.errors import NoPreviousError, NotInstalledError
from device_client.files import fsync_dir, fsync_file, temp_path, write_atomic


@dataclass(frozen=True)
class Installed:
    """A model file the device runs (or ran)."""

    version: int
    sha256: bytes
    path: Path


class ModelStore(Protocol):
    """What the updater needs from wherever models live (FileModelStore: RCW and .tflite files)."""

    #: Finds the tensors inside a model file, for codec.apply_payload.
    slot_reader: SlotReader

    def current(self, model: str) -> Installed | None:
        """The running model, or None if none is installed."""

    def rolled_back(self, model: str) -> int | None:
        """The highest version an operator rolled back; releases up to it are not installed again."""

    def stage(self, model: str, copy_current: bool, needs: int = 0) -> Path:
        """A new private file to write the next model into: a copy of the running one, or empty. The kept
        previous file is given up first only when the free disk is less than ``needs`` bytes (what
        writing the staged file takes), so rollback stays possible whenever the disk allows it."""

    def room(self, model: str) -> int:
        """Bytes a release of ``model`` may use: free disk space, and the previous file staging gives up
        when it must."""

    def commit(self, model: str, staged: Path, version: int, sha256: bytes) -> Installed:
        """Atomically make ``staged`` the running model, keeping the replaced one for rollback."""

    def discard(self, staged: Path) -> None:
        """Forget a staged file that will not be committed."""

    def rollback(self, model: str) -> Installed:
        """Put the previous model back; its version becomes the running one."""


class FileModelStore:
    """Model files under one directory, one subdirectory per model id.

    ``suffix`` names files whose kind the content does not tell (and models installed before suffixes
    were recorded); ``slot_reader`` finds tensors for codec.apply (by default by the file's content).
    """

    def __init__(self, root: Path, suffix: str = ".rcw", slot_reader: SlotReader = read_model_slots) -> None:
        self.root = Path(root)
        self.suffix = suffix
        self.slot_reader = slot_reader

    def model_path(self, model: str) -> Path:
        """The file the application loads: model.tflite or model.rcw."""
        return self._file(model, "model", self._read_state(model).get("current"))

    def current(self, model: str) -> Installed | None:
        with self._locked(model):
            return self._installed(self._recovered(model).get("current"), self.model_path(model))

    def rolled_back(self, model: str) -> int | None:
        return self._read_state(model).get("rolled_back")

    def stage(self, model: str, copy_current: bool, needs: int = 0) -> Path:
        directory = self.root / model
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".staged-*"):
            stale.unlink()
        if _free_disk(directory) < needs:
            self._give_up_previous(model)
        staged = directory / f".staged-{secrets.token_hex(4)}"
        if copy_current:
            if self.current(model) is None:
                raise NotInstalledError(f"model {model!r} is not installed; a delta release needs its base")
            try:
                shutil.copyfile(self.model_path(model), staged)
            except BaseException:
                staged.unlink(missing_ok=True)  # a partial copy (e.g. the disk filled up) must not stay
                raise
        else:
            staged.touch()
        return staged

    def room(self, model: str) -> int:
        with self._locked(model):
            previous = self._file(model, "previous", self._recovered(model).get("previous"))
            return _free_disk(self.root / model) + (previous.stat().st_size if previous.is_file() else 0)

    def _give_up_previous(self, model: str) -> None:
        """Remove the kept previous file (and its record): a rollback target only until the next release."""
        with self._locked(model):
            state = self._recovered(model)
            previous = self._file(model, "previous", state.get("previous"))
            if state.get("previous") is not None:
                self._write_state(model, {**state, "previous": None})
            previous.unlink(missing_ok=True)

    def commit(self, model: str, staged: Path, version: int, sha256: bytes) -> Installed:
        with self._locked(model):
            return self._swap(model, staged, version, sha256)

    def discard(self, staged: Path) -> None:
        staged.unlink(missing_ok=True)

    def install(self, model: str, source: Path, version: int) -> Installed:
        """Register a model file the device already runs (e.g. flashed with its image) as ``version``."""
        directory = self.root / model
        directory.mkdir(parents=True, exist_ok=True)
        staged = temp_path(self.model_path(model))
        shutil.copyfile(source, staged)
        with self._locked(model):
            installed = self._swap(model, staged, version, file_sha256(staged))
            state = self._read_state(model)
            state.pop("rolled_back", None)
            self._write_state(model, state)
            return installed

    def rollback(self, model: str) -> Installed:
        with self._locked(model):
            state = self._recovered(model)
            previous_path = self._file(model, "previous", state.get("previous"))
            previous = self._installed(state.get("previous"), previous_path)
            if previous is None or not previous_path.is_file() or file_sha256(previous_path) != previous.sha256:
                raise NoPreviousError(f"model {model!r} has no intact previous file to roll back to")
            restored = self._file(model, "model", state["previous"])
            os.replace(previous_path, restored)
            fsync_dir(self.root / model)
            undone = state["current"]["version"]
            self._write_state(model, {
                "current": state["previous"], "previous": None,
                "rolled_back": max(undone, state.get("rolled_back") or 0),
            })
            self._tidy(model, keep={restored})
            return Installed(previous.version, previous.sha256, restored)

    def _swap(self, model: str, staged: Path, version: int, sha256: bytes) -> Installed:
        state = self._recovered(model)
        new = _record(version, sha256, KIND_SUFFIXES.get(file_kind(staged), self.suffix))
        running = self._file(model, "model", state.get("current"))
        target = self._file(model, "model", new)
        fsync_file(staged)
        self._write_state(model, {**state, "pending": new})
        kept = self._file(model, "previous", state.get("current"))
        if running.exists():
            link = temp_path(running)
            os.link(running, link)
            os.replace(link, kept)
        os.replace(staged, target)
        fsync_dir(target.parent)
        self._write_state(model, {
            "current": new, "previous": state.get("current"), "rolled_back": state.get("rolled_back"),
        })
        self._tidy(model, keep={target, kept})
        return Installed(version, sha256, target)

    def _tidy(self, model: str, keep: set[Path]) -> None:
        """Remove model and previous files of another kind than the ones state.json now names."""
        for stale in (self.root / model).glob("*"):
            if stale.stem in ("model", "previous") and stale not in keep:
                stale.unlink()

    def _recovered(self, model: str) -> dict:
        """state.json with an interrupted commit finished (the file was swapped) or forgotten."""
        state = self._read_state(model)
        pending = state.pop("pending", None)
        if pending is None:
            return state
        running = self._file(model, "model", pending)
        if running.exists() and file_sha256(running).hex() == pending["sha256"]:
            state = {**state, "current": pending, "previous": state.get("current")}
        self._write_state(model, state)
        self._tidy(model, keep={self._file(model, "model", state.get("current")),
                                self._file(model, "previous", state.get("previous"))})
        return state

    def _installed(self, record: dict | None, path: Path) -> Installed | None:
        if record is None or not path.exists():
            return None
        return Installed(record["version"], bytes.fromhex(record["sha256"]), path)

    def _file(self, model: str, role: str, record: dict | None) -> Path:
        """MODEL_DIR/<model>/<role><suffix> for the file ``record`` describes ("model" or "previous")."""
        suffix = (record or {}).get("suffix", self.suffix)
        return self.root / model / f"{role}{suffix}"

    def _read_state(self, model: str) -> dict:
        path = self.root / model / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_state(self, model: str, state: dict) -> None:
        write_atomic(self.root / model / "state.json", json.dumps(state, sort_keys=True).encode())

    @contextmanager
    def _locked(self, model: str) -> Iterator[None]:
        """Serialise commits, installs and rollbacks of one model across processes."""
        directory = self.root / model
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _free_disk(folder: Path) -> int:
    """Free bytes on the file system that holds ``folder`` (or its nearest existing parent)."""
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _record(version: int, sha256: bytes, suffix: str) -> dict:
    return {"version": version, "sha256": sha256.hex(), "suffix": suffix}
