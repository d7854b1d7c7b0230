"""Durable file operations: write to a temp file, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_dir(directory: Path) -> None:
    """Make renames and new names inside ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def temp_path(target: Path) -> Path:
    """A fresh name beside ``target`` (same filesystem, so a rename onto ``target`` is atomic)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def write_atomic(target: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``target`` by ``data``: readers see the old or the new bytes, never a mix."""
    temp = temp_path(target)
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)
