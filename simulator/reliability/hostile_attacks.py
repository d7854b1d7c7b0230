"""The hostile inputs of the security suite: what an attacker publishes, and what the device must answer.

The attacker holds a genuine publisher credential but not the signing key: it publishes garbage,
unsigned, foreign-key, forged, truncated and oversized manifests, replays genuinely signed releases
captured earlier (an older one, one for another base, an expired one) and overwrites chunks. A second
group is signed with the trusted key on purpose, a compromised build pipeline or the defence in depth
behind the signature: a million chunks, a zstd bomb, msgpack depth and length bombs, NaN and Inf
scales, a shape mismatch. Each attack names the refusal codes a device may answer it with.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import msgpack
import numpy as np
import zstandard

from codec.arrays import pack
from codec.keys import SigningKey
from codec.manifest import SIGNATURE_DOMAIN, Manifest
from codec.payload import compress, encode_payload
from codec.quantise import lowrank_record
from codec.release import Release, make_release
from codec.topics import DEFAULT_PREFIX as PREFIX
from codec.topics import chunk_topic, manifest_topic, release_manifest_topic

#: The version the device runs while it is attacked; attacks claim later versions.
BASE_VERSION = 2
WIDTH = 64

Messages = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Attack:
    """``build(ctx, version)`` returns the messages the attacker publishes; ``codes`` are acceptable."""

    name: str
    codes: tuple[str, ...]
    build: Callable[[AttackContext, int], Messages]
    signed: bool = False  # True: signed with the trusted key (defence in depth, not an attacker without it)


@dataclass
class AttackContext:
    """What attacks are made from: the model id, the trusted and a foreign key, the device's base file and
    a genuine update of it."""

    model: str
    key: SigningKey
    foreign: SigningKey
    base: bytes
    update_payload: bytes
    update_length: int
    target_sha256: bytes

    def release(self, version: int, key: SigningKey | None = None, **options) -> Release:
        """A genuine delta release of the synthetic update (signed with ``key``, default the trusted one)."""
        values = dict(model=self.model, version=version, payload=self.update_payload,
                      decompressed_length=self.update_length, target_sha256=self.target_sha256,
                      key=key or self.key, base_version=BASE_VERSION, base_sha256=hashlib.sha256(self.base).digest(),
                      chunk_size=256, lifetime_s=3600)
        values.update(options)
        return make_release(**values)

    def signed_payload(self, version: int, payload: bytes, decompressed_length: int) -> Release:
        """A release the trusted key signs over a hostile payload."""
        return self.release(version, payload=payload, decompressed_length=decompressed_length,
                            target_sha256=hashlib.sha256(b"never").digest())


def release_messages(release: Release, model: str, chunks: list[bytes] | None = None) -> Messages:
    chunks = release.chunks if chunks is None else chunks
    version, kind = release.manifest.release_key
    out = [(chunk_topic(model, version, kind, i, PREFIX), chunk) for i, chunk in enumerate(chunks)]
    return out + [(release_manifest_topic(model, version, kind, PREFIX), release.envelope),
                  (manifest_topic(model, PREFIX), release.envelope)]


def _manifest_only(ctx: AttackContext, envelope: bytes) -> Messages:
    return [(manifest_topic(ctx.model, PREFIX), envelope)]


def _forge(manifest: Manifest, signer: SigningKey) -> bytes:
    """An envelope over ``manifest`` as given (no validation), signed by ``signer``."""
    signed = manifest.canonical_bytes()
    return msgpack.packb({"signed": signed, "signature": signer.sign(SIGNATURE_DOMAIN + signed)})


# -- attacks by a publisher credential without the signing key ----------------------------------------------

def _garbage(ctx: AttackContext, version: int) -> Messages:
    stray = [(f"{PREFIX}/models/{ctx.model}/releases/x/chunks/y", os.urandom(300)),
             (f"{PREFIX}/models/{ctx.model}/junk", os.urandom(300)),
             (chunk_topic(ctx.model, version, "delta", 0, PREFIX), os.urandom(300))]
    return stray + _manifest_only(ctx, b"\xc1" + os.urandom(2047))


def _unsigned(ctx: AttackContext, version: int) -> Messages:
    signed = ctx.release(version).manifest.canonical_bytes()
    return _manifest_only(ctx, msgpack.packb({"signed": signed, "signature": b""}))


def _foreign_key(ctx: AttackContext, version: int) -> Messages:
    return release_messages(ctx.release(version, key=ctx.foreign), ctx.model)


def _forged_signature(ctx: AttackContext, version: int) -> Messages:
    """Names the trusted key but is signed by the attacker's."""
    return _manifest_only(ctx, _forge(ctx.release(version).manifest, ctx.foreign))


def _truncated(ctx: AttackContext, version: int) -> Messages:
    envelope = ctx.release(version).envelope
    return _manifest_only(ctx, envelope[: len(envelope) * 2 // 3])


def _oversized(ctx: AttackContext, version: int) -> Messages:
    return _manifest_only(ctx, os.urandom(200 * 1024))


def _replay_older(ctx: AttackContext, version: int) -> Messages:
    """A genuine release 1, captured when it was current."""
    return release_messages(ctx.release(1, base_version=0), ctx.model)


def _other_base(ctx: AttackContext, version: int) -> Messages:
    """A genuine release made for another model file."""
    return release_messages(ctx.release(version, base_sha256=hashlib.sha256(b"another model file").digest()), ctx.model)


def _expired(ctx: AttackContext, version: int) -> Messages:
    return release_messages(ctx.release(version, created=int(time.time()) - 7200, lifetime_s=3600), ctx.model)


def _million_chunks_forged(ctx: AttackContext, version: int) -> Messages:
    manifest = replace(ctx.release(version).manifest, payload_length=1_000_000 * 256)
    return _manifest_only(ctx, _forge(manifest, ctx.foreign))


def _long_chunk(ctx: AttackContext, version: int) -> Messages:
    """A genuine release whose retained chunk 0 the attacker overwrote with a longer one."""
    release = ctx.release(version)
    return release_messages(release, ctx.model, [release.chunks[0] + b"\0" * 64, *release.chunks[1:]])


def _garbage_chunk(ctx: AttackContext, version: int) -> Messages:
    release = ctx.release(version)
    chunks = list(release.chunks)
    chunks[-1] = os.urandom(len(chunks[-1]))
    return release_messages(release, ctx.model, chunks)


# -- signed with the trusted key: the codec's limits behind the signature -----------------------------------

def _million_chunks_signed(ctx: AttackContext, version: int) -> Messages:
    manifest = replace(ctx.release(version).manifest, payload_length=1_000_000 * 256)
    return _manifest_only(ctx, _forge(manifest, ctx.key))


def _zstd_bomb(ctx: AttackContext, version: int) -> Messages:
    """256 MiB of zeros in a frame that does not declare its size; the manifest declares 4 KiB."""
    compressor = zstandard.ZstdCompressor(level=3, write_content_size=False)
    stream = compressor.compressobj()
    block = bytes(1 << 20)
    payload = b"".join(stream.compress(block) for _ in range(256)) + stream.flush()
    return release_messages(ctx.signed_payload(version, payload, 4096), ctx.model)


def _document(records_header: bytes, body: bytes) -> bytes:
    return b"\x82" + msgpack.packb("format") + msgpack.packb(1) + msgpack.packb("records") + records_header + body


def _depth_bomb(ctx: AttackContext, version: int) -> Messages:
    document = _document(b"\x91", b"\x91" * 100_000 + b"\xc0")
    return release_messages(ctx.signed_payload(version, compress(document), len(document)), ctx.model)


def _length_bomb(ctx: AttackContext, version: int) -> Messages:
    document = _document(b"\xdd\xff\xff\xff\xff", b"\xc0" * 16)
    return release_messages(ctx.signed_payload(version, compress(document), len(document)), ctx.model)


def _bin_length_bomb(ctx: AttackContext, version: int) -> Messages:
    body = b"\x81" + msgpack.packb("data") + b"\xc6\xff\xff\xff\xf0" + b"\0" * 64
    document = _document(b"\x91", body)
    return release_messages(ctx.signed_payload(version, compress(document), len(document)), ctx.model)


def _lowrank(ctx: AttackContext, version: int, shape: tuple[int, int], scale: str | None, value: float) -> Messages:
    rng = np.random.default_rng(version)
    record = lowrank_record("fc1.weight", shape, rng.normal(size=(shape[0], 4)) * 0.01, rng.normal(size=(4, shape[1])))
    if scale is not None:
        values = np.ones(shape[0] if scale == "u_scale" else shape[1], np.float32)
        values[1] = value
        record = replace(record, **{scale: pack(values, "f32")})
    payload, length = encode_payload([record])
    return release_messages(ctx.signed_payload(version, payload, length), ctx.model)


def _nan_scale(ctx: AttackContext, version: int) -> Messages:
    return _lowrank(ctx, version, (WIDTH, WIDTH), "u_scale", float("nan"))


def _inf_scale(ctx: AttackContext, version: int) -> Messages:
    return _lowrank(ctx, version, (WIDTH, WIDTH), "v_scale", float("inf"))


def _shape_mismatch(ctx: AttackContext, version: int) -> Messages:
    return _lowrank(ctx, version, (WIDTH // 2, WIDTH // 2), None, 0.0)


#: In this order, so that consecutive attacks never leave the same last_error behind.
ATTACKS = (
    Attack("garbage-on-model-topics", ("bad-format",), _garbage),
    Attack("foreign-key", ("unknown-key",), _foreign_key),
    Attack("unsigned-manifest", ("bad-format",), _unsigned),
    Attack("forged-signature", ("bad-signature",), _forged_signature),
    Attack("truncated-manifest", ("bad-format",), _truncated),
    Attack("replay-older-release", ("old-version",), _replay_older),
    Attack("oversized-manifest", ("over-limit",), _oversized),
    Attack("release-for-other-base", ("wrong-base",), _other_base),
    Attack("expired-manifest", ("expired",), _expired),
    Attack("million-chunks-forged", ("bad-signature",), _million_chunks_forged),
    Attack("chunk-longer-than-declared", ("bad-chunk",), _long_chunk),
    Attack("million-chunks-signed", ("over-limit",), _million_chunks_signed, signed=True),
    Attack("garbage-chunk", ("bad-chunk",), _garbage_chunk),
    Attack("zstd-bomb", ("over-limit", "bad-hash"), _zstd_bomb, signed=True),
    Attack("msgpack-depth-bomb", ("bad-format", "over-limit"), _depth_bomb, signed=True),
    Attack("msgpack-length-bomb", ("over-limit", "bad-format"), _length_bomb, signed=True),
    Attack("shape-mismatch", ("model-mismatch",), _shape_mismatch, signed=True),
    Attack("msgpack-bin-length-bomb", ("bad-format", "over-limit"), _bin_length_bomb, signed=True),
    Attack("nan-scale", ("non-finite",), _nan_scale, signed=True),
    Attack("inf-scale", ("non-finite",), _inf_scale, signed=True),
)
