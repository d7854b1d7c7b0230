"""Chunks on disk: a release's chunks survive a reconnect or a restart, so none is fetched twice.

MODEL_DIR/.spool/<model>/<version>-<kind>-<payload sha256 prefix>/chunks/<index> holds each chunk, verified
against the signed manifest before it is kept, again when the spool is reopened after a restart, and
again as the payload is read from the chunks for applying (they are never copied into one file).
refused.json remembers the last refused manifest, so a restart does not download it again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from codec.chunks import verify_chunk
from codec.errors import ChunkError, IntegrityError
from codec.manifest import Manifest
from device_client.files import write_atomic
from device_client.status import LastError


class SpooledPayload:
    """A release's payload read chunk by chunk (a codec.payload.PayloadSource)."""

    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self._chunks, self._length, self._pending = chunks, length, b""

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            self._pending = next(self._chunks, None)
            if self._pending is None:
                self._pending = b""
                return b""
        size = len(self._pending) if size is None or size < 0 else size
        piece, self._pending = self._pending[:size], self._pending[size:]
        return piece


class ReleaseSpool:
    """The chunks of one release held so far."""

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        self.manifest = manifest
        self.directory = directory
        self._chunks = directory / "chunks"
        self._chunks.mkdir(parents=True, exist_ok=True)
        self._have: set[int] = set()
        self._first_missing = 0
        self.bytes_done = 0
        for path in self._chunks.iterdir():
            if path.name.isdigit() and self._intact(int(path.name), path):
                self._hold(int(path.name))
            else:
                path.unlink()

    def put(self, index: int, data: bytes) -> bool:
        """Verify and keep chunk ``index``; False if it was already held. Raises ChunkError."""
        verify_chunk(self.manifest, index, data)
        if index in self._have:
            return False
        write_atomic(self._chunks / str(index), data, durable=False)
        self._hold(index)
        return True

    def missing(self, limit: int | None = None) -> list[int]:
        """The lowest ``limit`` (or all) indices not held yet; cheap however large the release."""
        count = self.manifest.chunk_count
        while self._first_missing < count and self._first_missing in self._have:
            self._first_missing += 1
        candidates = (i for i in range(self._first_missing, count) if i not in self._have)
        return list(itertools.islice(candidates, limit))

    @property
    def complete(self) -> bool:
        return len(self._have) == self.manifest.chunk_count

    @property
    def chunks_done(self) -> int:
        return len(self._have)

    def payload(self) -> SpooledPayload:
        """The payload as a stream over the spooled chunks (never put together on disk), after checking
        the whole of it against the manifest's length and sha256."""
        digest, length = hashlib.sha256(), 0
        for data in self._verified_chunks():
            digest.update(data)
            length += len(data)
        if length != self.manifest.payload_length or digest.digest() != self.manifest.payload_sha256:
            raise IntegrityError("the spooled payload does not match the manifest's length and sha256")
        return SpooledPayload(self._verified_chunks(), length)

    def _verified_chunks(self) -> Iterator[bytes]:
        for index in range(self.manifest.chunk_count):
            data = (self._chunks / str(index)).read_bytes()
            verify_chunk(self.manifest, index, data)
            yield data

    def _hold(self, index: int) -> None:
        self._have.add(index)
        self.bytes_done += self.manifest.chunk_length(index)

    def _intact(self, index: int, path: Path) -> bool:
        try:
            verify_chunk(self.manifest, index, path.read_bytes())
        except ChunkError:
            return False
        return True


class Spool:
    """One model's spool directory: the releases of the download in progress, and the last refusal."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def open_all(self, manifests: list[Manifest]) -> list[ReleaseSpool]:
        """The spools of these releases (the steps of one download), each resumed if it exists; the chunks
        of every other release are dropped."""
        names = [f"{m.version}-{m.payload_kind}-{m.payload_sha256.hex()[:16]}" for m in manifests]
        self._remove_releases(keep=set(names))
        return [ReleaseSpool(self.root / name, manifest) for name, manifest in zip(names, manifests, strict=True)]

    def clear(self) -> None:
        self._remove_releases(keep=set())

    def held_bytes(self) -> int:
        """Bytes of chunks spooled for any release (opening a release reuses or frees them all)."""
        if not self.root.exists():
            return 0
        return sum(path.stat().st_size for path in self.root.glob("*/chunks/*") if path.is_file())

    def refusal(self, manifest_digest: bytes) -> LastError | None:
        """The error recorded for this exact manifest (sha256 of its envelope), if it was refused."""
        path = self.root / "refused.json"
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        return LastError(**record["error"]) if record["manifest"] == manifest_digest.hex() else None

    def refuse(self, manifest_digest: bytes, error: LastError) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"manifest": manifest_digest.hex(), "error": asdict(error)}
        write_atomic(self.root / "refused.json", json.dumps(record).encode())

    def _remove_releases(self, keep: set[str]) -> None:
        if not self.root.exists():
            return
        for path in self.root.iterdir():
            if path.is_dir() and path.name not in keep:
                shutil.rmtree(path)
