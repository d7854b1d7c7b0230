"""Manifest format 2: a signed map of short keys without the fields a reader restores, and inline chunks.

Format 1 (docs/format.md §5) signs the fields under their names; format 2 signs the same fields under the
keys of ``SHORT_KEYS`` and leaves out what is redundant: ``chunk_sha256`` when the payload is one chunk
(that chunk is the payload, so its sha256 is ``payload_sha256``), and ``base_version`` and
``base_sha256`` when they are nil (a full release). A reader restores them before the fields are checked,
so the rest of the code sees the same ``Manifest`` whatever the format. The canary's and the index's
maps keep their keys. A format-2 envelope may also carry its release's one chunk (``inline``), when the
payload is at most MAX_INLINE_BYTES: the chunk's sha256 is signed, so it is checked as a chunk is.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from codec.errors import ChunkError, FormatError
from codec.limits import MAX_INLINE_BYTES

if TYPE_CHECKING:
    from codec.manifest import Manifest

#: Field name -> its key in a format-2 signed map (docs/format.md §5, "Format 2").
SHORT_KEYS = {
    "format": "f", "model": "m", "version": "v", "payload_kind": "k", "base_version": "bv", "base_sha256": "bs",
    "target_sha256": "t", "payload_length": "pl", "payload_sha256": "ps", "decompressed_length": "dl",
    "chunk_size": "cs", "chunk_sha256": "ch", "created": "c", "expires": "e", "rollout_percent": "rp",
    "rollout_salt": "rs", "key_id": "ki", "canary": "ca", "index": "ix", "fleet": "fl",
}
_NAMES = {short: name for name, short in SHORT_KEYS.items()}
#: Fields left out when nil (a full release names no base).
_NIL_LEFT_OUT = ("base_version", "base_sha256")


def single_chunk(values: dict) -> bool:
    """Whether the payload these fields declare is one chunk (False for fields not yet type-checked)."""
    length, size = values.get("payload_length"), values.get("chunk_size")
    return type(length) is int and type(size) is int and 0 < length <= size


def to_short(values: dict) -> dict:
    """The format-2 map of a manifest's fields (``Manifest.signed_fields``); raises FormatError for fields
    the short map cannot carry exactly (one chunk whose sha256 is not the payload's)."""
    short = {}
    for name, value in values.items():
        if name not in SHORT_KEYS:
            raise FormatError(f"manifest field {name} has no key in format 2")
        if (name in _NIL_LEFT_OUT and value is None) or (name == "chunk_sha256" and single_chunk(values)):
            continue
        short[SHORT_KEYS[name]] = value
    if single_chunk(values) and values.get("chunk_sha256") != values.get("payload_sha256"):
        raise FormatError("a payload of one chunk is that chunk: its chunk_sha256 must be its payload_sha256")
    return short


def from_short(short: dict) -> dict:
    """The fields of a format-2 signed map under their names, with what it leaves out restored; raises
    FormatError for a key of no field (a format-1 name too) and for a field it must leave out."""
    unknown = sorted(str(key) for key in short if key not in _NAMES)
    if unknown:
        raise FormatError(f"a format-2 manifest has keys of no field: {', '.join(unknown)} (format 2 uses the "
                          "short keys of docs/format.md §5)")
    values = {_NAMES[key]: value for key, value in short.items()}
    for name in _NIL_LEFT_OUT:
        if name in values and values[name] is None:
            raise FormatError(f"a format-2 manifest leaves {name} out when it is nil, never nil")
        values.setdefault(name, None)
    if single_chunk(values):
        if "chunk_sha256" in values:
            raise FormatError("a format-2 manifest of one chunk leaves chunk_sha256 out (it is payload_sha256)")
        if "payload_sha256" in values:
            values["chunk_sha256"] = values["payload_sha256"]
    return values


def named_fields(fields: object) -> object:
    """A signed map as read under the field names: a format-2 map's decoded (from_short), anything else
    handed back as it is, for the reader to check after the signature (a map under field names that says
    format 2 is not canonical: re-encoding it gives short keys)."""
    if isinstance(fields, dict) and "format" not in fields and fields.get("f") == 2:
        return from_short(fields)
    return fields


def travels_inline(manifest: Manifest) -> bool:
    """Whether the release's envelope carries its chunk: always for format 2 and one chunk of at most
    MAX_INLINE_BYTES (so the limit is part of format 2), never otherwise."""
    return manifest.format >= 2 and manifest.chunk_count == 1 and manifest.payload_length <= MAX_INLINE_BYTES


def check_inline(manifest: Manifest, inline: bytes | None) -> None:
    """Refuse ``inline`` unless the release carries it (travels_inline) and it is that chunk: FormatError, or
    ChunkError (code bad-chunk, as for a chunk on its own topic); refuse an envelope of such a release
    without it (FormatError: stripped on the way, and its chunk is on no topic)."""
    if inline is None:
        if travels_inline(manifest):
            raise FormatError(f"a format-2 release of one chunk of at most {MAX_INLINE_BYTES} bytes carries it "
                              "inline, and this envelope does not (stripped on the way?): its chunk is on no topic")
        return
    if not travels_inline(manifest) or len(inline) != manifest.payload_length:
        raise FormatError(f"only a format-2 release of one chunk of at most {MAX_INLINE_BYTES} bytes carries it "
                          "inline, and exactly its payload_length bytes")
    if hashlib.sha256(inline).digest() != manifest.chunk_digest(0):
        raise ChunkError("the chunk the manifest carries inline does not match its sha256 (corrupted or forged)")
