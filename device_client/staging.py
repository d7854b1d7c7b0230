"""Building the model file a download produces, beside the running one (device_client.updater): the room
it needs on disk, and its steps applied in order to one staged copy, each checked against its target."""

from __future__ import annotations

import errno
from pathlib import Path

from codec.apply import apply_payload
from codec.errors import BaseMismatchError, IntegrityError
from codec.limits import MIB, Limits
from device_client.catchup import describe_miss
from device_client.download import Download
from device_client.spool import Spool
from device_client.store import Installed, ModelStore

#: Room a release leaves free besides its own files (state.json, logs, the file system's own needs).
ROOM_MARGIN = 4 * MIB


def check_room(store: ModelStore, spool: Spool, model: str, download: Download) -> None:
    """Raise OSError(ENOSPC) up front for a download the disk cannot hold: every step's chunks and the staged
    file. Chunks already spooled (resumed, or another release's that opening the download frees) count as
    room."""
    need = download.payload_bytes + staged_bytes(store.current(model), download) + ROOM_MARGIN
    room = store.room(model) + spool.held_bytes()
    if room < need:
        raise OSError(errno.ENOSPC, f"release {download.latest.version} needs {need >> 20} MiB on disk, "
                      f"{room >> 20} MiB are free; free space and restart the client")


def staged_bytes(installed: Installed | None, download: Download) -> int:
    """The staged file's size: the running file's when the path starts with a delta, at most the full
    payload's document when it starts with the full file."""
    first = download.manifests[download.steps[0].key]
    if first.payload_kind == "full" or installed is None:
        return first.decompressed_length
    return installed.path.stat().st_size


def build_staged(store: ModelStore, model: str, download: Download, limits: Limits) -> tuple[Path, bytes]:
    """Stage a copy (of the running file when the path starts with a delta), apply every step to it and
    check each step's target sha256; returns the staged file and its sha256. The staged file is discarded
    on any failure (codec errors, BaseMismatchError, OSError)."""
    installed, first = store.current(model), download.steps[0]
    if first.kind == "delta" and (installed is None or installed.sha256 != first.base_sha256):
        raise BaseMismatchError(describe_miss(download.latest, installed and installed.sha256,
                                              installed and installed.version))
    staged = store.stage(model, copy_current=first.kind == "delta",
                         needs=staged_bytes(installed, download) + ROOM_MARGIN)
    try:
        for step, release in download.ordered():
            sha256 = apply_payload(staged, release.payload(), step.decompressed_length, limits, store.slot_reader,
                                   full=step.payload_kind == "full")
            if sha256 != step.target_sha256:
                raise IntegrityError(
                    f"release {step.version} produced a model with sha256 {sha256.hex()[:16]}…, its manifest "
                    f"promises {step.target_sha256.hex()[:16]}…; the running model is kept"
                )
    except BaseException:
        store.discard(staged)
        raise
    return staged, sha256
