"""Cutting a payload into chunks, checking each against the manifest, and putting them back together."""

from __future__ import annotations

import hashlib

from codec.errors import ChunkError, IntegrityError
from codec.limits import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from codec.manifest import Manifest


def split_payload(payload: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[bytes]:
    """Consecutive slices of ``chunk_size`` bytes; the last may be shorter."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be within {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes, got {chunk_size}")
    return [payload[offset : offset + chunk_size] for offset in range(0, len(payload), chunk_size)]


def chunk_digests(chunks: list[bytes]) -> bytes:
    """The concatenated sha256 digests a manifest carries in chunk_sha256."""
    return b"".join(hashlib.sha256(chunk).digest() for chunk in chunks)


def verify_chunk(manifest: Manifest, index: int, data: bytes) -> None:
    """Raise ChunkError unless ``data`` is exactly chunk ``index`` of the manifest's payload."""
    if not 0 <= index < manifest.chunk_count:
        raise ChunkError(f"chunk index {index} is outside 0..{manifest.chunk_count - 1}")
    if len(data) != manifest.chunk_length(index):
        raise ChunkError(f"chunk {index} has {len(data)} bytes, the manifest declares {manifest.chunk_length(index)}")
    if hashlib.sha256(data).digest() != manifest.chunk_digest(index):
        raise ChunkError(f"chunk {index} does not match its sha256 in the manifest (corrupted or forged)")


def verify_payload(manifest: Manifest, payload: bytes) -> None:
    """Raise IntegrityError unless ``payload`` has the manifest's length and sha256."""
    if len(payload) != manifest.payload_length or hashlib.sha256(payload).digest() != manifest.payload_sha256:
        raise IntegrityError("the reassembled payload does not match the manifest's length and sha256")


class Reassembler:
    """Collects a release's chunks in any order, ignores duplicates, reports what is missing."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._chunks: dict[int, bytes] = {}

    def add(self, index: int, data: bytes) -> bool:
        """Verify and keep chunk ``index``; returns False for a chunk already held."""
        verify_chunk(self.manifest, index, data)
        if index in self._chunks:
            return False
        self._chunks[index] = data
        return True

    def missing(self) -> list[int]:
        return [i for i in range(self.manifest.chunk_count) if i not in self._chunks]

    @property
    def complete(self) -> bool:
        return len(self._chunks) == self.manifest.chunk_count

    def payload(self) -> bytes:
        """The whole payload, checked against the manifest; raises IntegrityError if incomplete."""
        if not self.complete:
            raise IntegrityError(f"{len(self.missing())} chunks are still missing")
        payload = b"".join(self._chunks[i] for i in range(self.manifest.chunk_count))
        verify_payload(self.manifest, payload)
        return payload
