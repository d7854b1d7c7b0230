"""Turning a payload into a release: chunks plus the signed manifest that pins them (and, for a payload of
one chunk of at most codec.limits.MAX_INLINE_BYTES, carries it inline)."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from codec.canary import Canary
from codec.chunks import chunk_digests, split_payload
from codec.keys import SigningKey
from codec.limits import DEFAULT_CHUNK_SIZE
from codec.manifest import DEFAULT_MANIFEST_FORMAT, Manifest, inline_chunk, sign_manifest
from codec.manifest_compact import travels_inline
from codec.release_index import IndexEntry

DEFAULT_LIFETIME_S = 30 * 24 * 3600


@dataclass(frozen=True)
class Release:
    """What a publisher sends: the chunks first, then the signed manifest envelope (only the envelope when
    it carries the one chunk inline)."""

    manifest: Manifest
    envelope: bytes
    chunks: list[bytes]

    @property
    def inline(self) -> bool:
        """Whether the envelope carries the chunk, so the release has no chunk topics."""
        return inline_chunk(self.envelope) is not None

    @property
    def sent_chunks(self) -> list[bytes]:
        """The chunks published on their own topics: all of them, or none when the envelope carries it."""
        return [] if self.inline else self.chunks


def make_release(
    *,
    model: str,
    version: int,
    payload: bytes,
    decompressed_length: int,
    target_sha256: bytes,
    key: SigningKey,
    base_version: int | None = None,
    base_sha256: bytes | None = None,
    full: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    rollout_percent: float = 100.0,
    rollout_salt: str | None = None,
    created: int | None = None,
    lifetime_s: int = DEFAULT_LIFETIME_S,
    canary: Canary | None = None,
    index: tuple[IndexEntry, ...] | None = None,
    fleet: str | None = None,
    cosigners: Sequence[SigningKey] = (),
    manifest_format: int = DEFAULT_MANIFEST_FORMAT,
) -> Release:
    """Cut ``payload`` into chunks and sign a manifest for it (validated before signing); ``index`` lists
    the older releases devices may catch up through (codec.release_index), ``fleet`` the devices it is for,
    ``cosigners`` the release keys that sign besides ``key`` (codec.manifest.sign_manifest).
    ``manifest_format`` 1 is for fleets whose devices predate format 2; in format 2 a payload of one chunk
    of at most MAX_INLINE_BYTES travels inline in the envelope (codec.manifest_compact.travels_inline)."""
    chunks = split_payload(payload, chunk_size)
    created = int(time.time()) if created is None else created
    manifest = Manifest(
        model=model, version=version, payload_kind="full" if full else "delta",
        base_version=base_version, base_sha256=base_sha256, target_sha256=target_sha256,
        payload_length=len(payload), payload_sha256=hashlib.sha256(payload).digest(),
        decompressed_length=decompressed_length, chunk_size=chunk_size, chunk_sha256=chunk_digests(chunks),
        created=created, expires=created + lifetime_s, rollout_percent=float(rollout_percent),
        rollout_salt=secrets.token_hex(8) if rollout_salt is None else rollout_salt,
        key_id=key.verify_key.key_id, format=manifest_format, canary=canary, index=index, fleet=fleet,
    )
    carried = chunks[0] if travels_inline(manifest) else None
    return Release(manifest, sign_manifest(manifest, key, cosigners, carried), chunks)
