"""Human-readable summaries of the format's files, for `rankcast inspect`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import zstandard

from codec.compact import COMPACT_FORMAT, Layout
from codec.errors import FormatError
from codec.keys import VerifyKey
from codec.manifest import Manifest, iso_time, read_manifest, read_manifest_unverified
from codec.model_files import model_kind, read_model_slots
from codec.payload import iter_records, payload_format
from codec.records import DenseRecord, FullRecord, LowRankRecord, Record, SparseRecord
from codec.seeded import GENERATOR, SeededSigns
from codec.update_file import MAGIC as UPDATE_MAGIC
from codec.update_file import UpdateFile

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def describe(data: bytes, trusted_keys: Mapping[str, VerifyKey] | None = None, model: bytes | None = None) -> str:
    """Summarise a payload, manifest envelope, .rcu update or model file (RCW, .tflite), by content; a
    format-2 payload's records are listed with ``model``, the model file they apply to."""
    if data.startswith(ZSTD_MAGIC):
        return describe_payload(data, layout=None if model is None else read_model_slots(memoryview(model)))
    if model_kind(data) is not None:
        return describe_model_file(data)
    if data.startswith(UPDATE_MAGIC):
        return describe_update_file(data)
    return describe_manifest(data, trusted_keys)


def describe_payload(payload: bytes, decompressed_length: int | None = None, layout: Layout | None = None) -> str:
    """One line per record: kind, name, shape, rank or dtype, and the bytes of its codes. A format-2 payload
    needs ``layout`` (the tensors of the model it applies to) for that; without, one line says so."""
    if decompressed_length is None:
        try:
            declared = zstandard.get_frame_parameters(payload).content_size
        except zstandard.ZstdError as exc:
            raise FormatError(f"not a valid zstd payload: {exc}") from None
        if declared == zstandard.CONTENTSIZE_UNKNOWN:
            raise FormatError("this payload's zstd frame does not state its size; inspect its manifest instead")
        decompressed_length = declared
    version = payload_format(payload, decompressed_length)
    lines = [f"payload: {len(payload):,} bytes compressed, {decompressed_length:,} decompressed, format {version}"]
    if version == COMPACT_FORMAT and layout is None:
        return "\n".join(lines + ["  its records refer to the model's tensors by position: pass the model file "
                                  "they apply to (rankcast inspect PAYLOAD --model FILE) to list them"])
    lines.append(f"  {'kind':8} {'tensor':32} {'shape':>18} {'detail':>18} {'code bytes':>10}")
    count = 0
    for record in iter_records(payload, decompressed_length, layout=layout):
        count += 1
        size = _code_bytes(record)
        shape = "x".join(map(str, getattr(record, "shape", ()))) or "-"
        lines.append(f"  {record.kind:8} {record.name[:32]:32} {shape:>18} {_detail(record):>18} {size:>10,}")
        lines += _seeded_lines(record)
    lines.append(f"{count} records")
    return "\n".join(lines)


def _code_bytes(record: Record) -> int:
    """The bytes of what a record carries (codes, values, gaps; a full record's file), before zstd."""
    if isinstance(record, LowRankRecord):
        return sum(len(factor.data) for factor in (record.u, record.v) if not isinstance(factor, SeededSigns))
    if isinstance(record, SparseRecord):
        return len(record.gaps.data) + len(record.values.data)
    return len(record.data) if isinstance(record, FullRecord) else len(record.values.data)


def _detail(record: Record) -> str:
    if isinstance(record, LowRankRecord):
        stored = record.v if isinstance(record.u, SeededSigns) else record.u
        return f"rank {record.rank} {stored.dtype}"
    if isinstance(record, DenseRecord):
        return f"{record.mode} {record.values.dtype}"
    if isinstance(record, SparseRecord):
        return f"{record.mode} {record.gaps.size} {record.values.dtype}"
    assert isinstance(record, FullRecord)
    return f"file sha256 {hashlib.sha256(record.data).hexdigest()[:8]}"


def _seeded_lines(record: Record) -> list[str]:
    """A line under a lowrank record for its seeded factor, if it has one."""
    if not isinstance(record, LowRankRecord):
        return []
    return [
        f"  {'':8} {side}: seeded signs {'x'.join(map(str, factor.shape))} (seed {factor.seed}, {GENERATOR})"
        for side, factor in (("u", record.u), ("v", record.v)) if isinstance(factor, SeededSigns)
    ]


def describe_manifest(envelope: bytes, trusted_keys: Mapping[str, VerifyKey] | None = None) -> str:
    """Every manifest field; the signature is checked when ``trusted_keys`` is given."""
    if trusted_keys is None:
        manifest, verdict = read_manifest_unverified(envelope), "not checked (pass --trust KEY.pub)"
    else:
        manifest, verdict = read_manifest(envelope, trusted_keys), "valid"
    return "\n".join(_manifest_lines(manifest, len(envelope), verdict))


def _manifest_lines(m: Manifest, size: int, verdict: str) -> list[str]:
    when = iso_time

    base = "none (full release)" if m.base_sha256 is None else f"version {m.base_version}, sha256 {m.base_sha256.hex()}"
    return [
        f"manifest: {size:,} bytes, format {m.format}",
        f"  model          {m.model}",
        f"  fleet          {m.fleet or 'none named (devices of any fleet take it)'}",
        f"  version        {m.version} ({m.payload_kind})",
        f"  base           {base}",
        f"  target sha256  {m.target_sha256.hex()}",
        f"  payload        {m.payload_length:,} bytes (decompressed {m.decompressed_length:,}), "
        f"sha256 {m.payload_sha256.hex()}",
        f"  chunks         {m.chunk_count} of {m.chunk_size:,} bytes",
        f"  created        {when(m.created)}",
        f"  expires        {when(m.expires)}",
        f"  rollout        {m.rollout_percent:g}% (salt {m.rollout_salt})",
        f"  signed by      {m.key_id}: signature {verdict}",
        *_index_lines(m),
    ]


def _index_lines(m: Manifest) -> list[str]:
    """The release index: what a device on an older version can catch up through."""
    if not m.index:
        reach = "any device takes the whole file" if m.payload_kind == "full" else \
            "only devices on the base version can take this release"
        return [f"  index          none ({reach})"]
    lines = [f"  index          {len(m.index)} releases devices catch up through:"]
    for entry in m.index:
        start = "any file" if entry.base_sha256 is None else f"sha256 {entry.base_sha256.hex()[:16]}"
        lines.append(f"    {entry.version:>6} {entry.kind:<5} {entry.payload_length:>12,} bytes  from {start}, "
                     f"manifest sha256 {entry.manifest_sha256.hex()[:16]}")
    return lines


def describe_model_file(data: bytes) -> str:
    """The tensors an update can change in an RCW or .tflite file, and the file's sha256."""
    kind = model_kind(data)
    slots = read_model_slots(memoryview(data))
    lines = [f"{kind.upper()} model file: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}"]
    for slot in slots.values():
        layout = "" if slot.permutation is None else f"  stored as axes {slot.permutation}"
        lines.append(f"  {slot.name:40} {'x'.join(map(str, slot.shape)):>18} {slot.nbytes:>12,} bytes{layout}")
    lines.append(f"{len(slots)} tensors, {sum(s.nbytes for s in slots.values()) // 4:,} parameters")
    return "\n".join(lines)


def describe_update_file(data: bytes) -> str:
    """An .rcu file: what publishing it needs, its facts, and its payload's records."""
    update = UpdateFile.from_bytes(data)
    def digest(value: bytes | None) -> str:
        return "unknown (build with --deployed FILE)" if value is None else value.hex()

    lines = [
        f"update file: {update.payload_kind} update, {len(update.payload):,} payload bytes",
        f"  base sha256    {digest(update.base_sha256)}",
        f"  target sha256  {digest(update.target_sha256)}",
    ]
    lines += [f"  {key:14} {value}" for key, value in update.info.items()]
    return "\n".join(lines + [describe_payload(update.payload, update.decompressed_length, update.layout())])
