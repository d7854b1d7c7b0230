"""Turning an update file or a whole model file into a signed release (no torch, no network): the signing
key, the options of `rankcast publish` (lifetime, chunk size) checked as an operator gives them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from codec.canary import Canary
from codec.errors import SignatureError
from codec.keys import PRIVATE_NAME, SigningKey, load_signing_key
from codec.limits import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from codec.manifest import DEFAULT_MANIFEST_FORMAT
from codec.payload import encode_payload
from codec.quantise import full_record
from codec.release import Release, make_release
from codec.release_index import IndexEntry
from codec.update_file import UpdateFile
from publisher.errors import ConfigError, ReleaseInputError, SigningKeyError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``90m``, ``12h``, ``30d`` or ``2w`` (``1d12h`` combines units)."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"--expires {text!r} is not a duration: give a number and a unit, such as 3600s, 90m, "
                          "12h, 30d or 2w (1d12h combines them)")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds == 0:
        raise ConfigError(f"--expires {text!r} would expire the release at once: give a lifetime above 0, such as 30d")
    return seconds


def load_release_key(path: Path) -> SigningKey:
    """The private key releases are signed with, as `rankcast keygen` writes it (``signing.key``)."""
    try:
        return load_signing_key(path)
    except SignatureError:
        if b"PUBLIC KEY-----" in Path(path).read_bytes()[:100]:
            raise SigningKeyError(f"--key {path} is the public key devices trust; sign with the private one "
                                  f"({Path(path).with_name(PRIVATE_NAME)} from the same `rankcast keygen`)") from None
        raise SigningKeyError(f"--key {path} is not an unencrypted Ed25519 private key in PEM; give the "
                              f"{PRIVATE_NAME} that `rankcast keygen DIR` wrote") from None


def check_chunk_size(chunk_size: int) -> int:
    """``chunk_size`` if devices accept chunks of that many bytes."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ConfigError(f"--chunk-size {chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes, the "
                          f"chunks devices accept; the default {DEFAULT_CHUNK_SIZE} suits most links")
    return chunk_size


def rollout_salt(model: str, version: int) -> str:
    """The cohort salt of a release: stable, so publishing it again with a higher --rollout only adds devices."""
    return hashlib.sha256(f"{model}\x00{version}".encode()).hexdigest()[:16]


def update_release(
    update: UpdateFile,
    *,
    model: str,
    version: int,
    key: SigningKey,
    base_version: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    rollout_percent: float = 100.0,
    lifetime_s: int,
    canary: Canary | None = None,
    index: tuple[IndexEntry, ...] | None = None,
    fleet: str | None = None,
    cosigners: tuple[SigningKey, ...] = (),
    manifest_format: int = DEFAULT_MANIFEST_FORMAT,
) -> Release:
    """A release of an update built by `rankcast update build` (a .rcu file); ``canary`` from
    publisher.tflite.canary.update_canary; ``index`` from publisher.release.publish.publish_with_index;
    ``fleet`` the devices it is for (devices configured for another fleet refuse it); ``cosigners`` sign
    too (a trust root's release threshold above 1); ``manifest_format`` 1 for fleets whose devices predate
    format 2 (codec.release.make_release)."""
    if update.target_sha256 is None:
        raise ReleaseInputError(
            "the update does not say which model file it produces (no target sha256): build it against the "
            "deployed model file"
        )
    full = update.payload_kind == "full"
    if not full and update.base_sha256 is None:
        raise ReleaseInputError("a delta update must name the sha256 of the model file it applies to")
    return make_release(
        model=model, version=version, payload=update.payload, decompressed_length=update.decompressed_length,
        target_sha256=update.target_sha256, key=key, full=full,
        base_version=None if full else (version - 1 if base_version is None else base_version),
        base_sha256=None if full else update.base_sha256, chunk_size=check_chunk_size(chunk_size),
        rollout_percent=rollout_percent, rollout_salt=rollout_salt(model, version), lifetime_s=lifetime_s,
        canary=canary, index=index, fleet=fleet, cosigners=cosigners, manifest_format=manifest_format,
    )


def full_release(
    model_file: bytes,
    *,
    model: str,
    version: int,
    key: SigningKey,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    rollout_percent: float = 100.0,
    lifetime_s: int,
    canary: Canary | None = None,
    index: tuple[IndexEntry, ...] | None = None,
    fleet: str | None = None,
    cosigners: tuple[SigningKey, ...] = (),
    manifest_format: int = DEFAULT_MANIFEST_FORMAT,
) -> Release:
    """A release carrying a whole model file: first deployment, the full-model baseline, or the fallback
    of a delta release (published with ``latest=False``)."""
    if not model_file:
        raise ReleaseInputError("the model file is empty")
    payload, decompressed_length = encode_payload([full_record(model_file)])
    return make_release(
        model=model, version=version, payload=payload, decompressed_length=decompressed_length,
        target_sha256=hashlib.sha256(model_file).digest(), key=key, full=True,
        chunk_size=check_chunk_size(chunk_size),
        rollout_percent=rollout_percent, rollout_salt=rollout_salt(model, version), lifetime_s=lifetime_s,
        canary=canary, index=index, fleet=fleet, cosigners=cosigners, manifest_format=manifest_format,
    )
