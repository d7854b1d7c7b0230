"""The .rcu update file: a payload plus what publishing it needs, kept between `update build` and `publish`.

Layout: b"RCU1" then one msgpack map {"payload": bin, "decompressed_length": int, "payload_kind":
"delta"|"full", "base_sha256": bin(32)|nil, "target_sha256": bin(32)|nil, "info": {str: str|int|float}},
plus "tensors": [[name, [dims]], ...] for a format-2 payload, whose records refer to the deployed file's
tensors by position: the tools that read an .rcu (inspect, publish) decode its payload with them.
base/target are known when the update was built against the deployed model file (or for full files).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from codec.apply import apply_to_bytes
from codec.compact import Layout, layout_from_shapes
from codec.errors import BaseMismatchError, FormatError, IntegrityError
from codec.manifest import PAYLOAD_KINDS

MAGIC = b"RCU1"
_KEYS = {"payload", "decompressed_length", "payload_kind", "base_sha256", "target_sha256", "info"}


@dataclass(frozen=True)
class UpdateFile:
    """An update ready to publish; ``info`` holds free-form facts such as accuracies."""

    payload: bytes
    decompressed_length: int
    payload_kind: str = "delta"
    base_sha256: bytes | None = None
    target_sha256: bytes | None = None
    info: dict[str, str | int | float] = field(default_factory=dict)
    #: The deployed file's tensors (name, shape) in file order, which a format-2 payload refers to.
    tensors: tuple[tuple[str, tuple[int, ...]], ...] | None = None

    def layout(self) -> Layout | None:
        """The layout a format-2 payload needs to decode (None when the file keeps none)."""
        return None if self.tensors is None else layout_from_shapes(self.tensors)

    def to_bytes(self) -> bytes:
        if self.payload_kind not in PAYLOAD_KINDS:
            raise FormatError(f"payload_kind must be one of {PAYLOAD_KINDS}")
        body = {
            "payload": self.payload, "decompressed_length": self.decompressed_length,
            "payload_kind": self.payload_kind, "base_sha256": self.base_sha256,
            "target_sha256": self.target_sha256, "info": dict(self.info),
        }
        if self.tensors is not None:
            body["tensors"] = [[name, list(shape)] for name, shape in self.tensors]
        return MAGIC + msgpack.packb(body, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> UpdateFile:
        if not data.startswith(MAGIC):
            raise FormatError("not a rankcast update file (.rcu): bad magic")
        try:
            body = msgpack.unpackb(data[len(MAGIC) :], raw=False, max_ext_len=0)
        except (msgpack.exceptions.UnpackException, ValueError, TypeError) as exc:
            raise FormatError(f"the update file is not valid msgpack: {exc}") from None
        if not isinstance(body, dict) or not _KEYS <= set(body) <= _KEYS | {"tensors"}:
            raise FormatError(f"an update file holds exactly the keys {sorted(_KEYS)} (and tensors)")
        for name in ("base_sha256", "target_sha256"):
            if body[name] is not None and (not isinstance(body[name], bytes) or len(body[name]) != 32):
                raise FormatError(f"{name} must be 32 bytes or nil")
        if not isinstance(body["payload"], bytes) or type(body["decompressed_length"]) is not int:
            raise FormatError("payload must be bytes and decompressed_length an integer")
        if body["payload_kind"] not in PAYLOAD_KINDS or not isinstance(body["info"], dict):
            raise FormatError("payload_kind must be 'delta' or 'full' and info a map")
        if "tensors" in body:
            body["tensors"] = _tensors(body["tensors"])
        return cls(**body)


def _tensors(value: object) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if not isinstance(value, list) or not all(
        isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], list)
        and all(type(d) is int and d >= 1 for d in entry[1]) for entry in value
    ):
        raise FormatError("an update file's tensors are [[name, [dims]], ...]")
    return tuple((name, tuple(shape)) for name, shape in value)


def write_update_file(path: Path, update: UpdateFile) -> None:
    Path(path).write_bytes(update.to_bytes())


def read_update_file(path: Path) -> UpdateFile:
    return UpdateFile.from_bytes(Path(path).read_bytes())


def updated_model_file(base: bytes, update: UpdateFile) -> bytes:
    """The model file a device running ``base`` has after ``update`` (a full update ignores ``base``).

    Checked against what the update names: BaseMismatchError when ``base`` is not its base file,
    IntegrityError when the result is not its target file.
    """
    delta = update.payload_kind == "delta"
    if delta and update.base_sha256 is not None and hashlib.sha256(base).digest() != update.base_sha256:
        raise BaseMismatchError("the update was built for another model file (its base sha256 differs)")
    data, digest = apply_to_bytes(base if delta else b"", update.payload, update.decompressed_length)
    if update.target_sha256 is not None and digest != update.target_sha256:
        raise IntegrityError("applying the update does not give the target file it names (target sha256 differs)")
    return data
