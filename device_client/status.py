"""The status a device publishes, retained, on {prefix}/devices/<id>/status (its last will: offline).

    {"device": str, "state": "idle|downloading|applying|error|offline",
     "models": {"<model>": {"version": int, "sha256": hex}},
     "progress": {"model", "release", "chunks_done", "chunks_total", "bytes_done", "bytes_total"} | null,
     "last_error": {"code": str, "message": str, "release": int, "model": str} | null}
"""

from __future__ import annotations

import errno
import json
from dataclasses import asdict, dataclass, field

STATES = ("idle", "downloading", "applying", "error", "offline")
#: OSErrors that mean the device ran out of room for a file: no space left, a file-size limit, a quota.
_DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


@dataclass(frozen=True)
class LastError:
    """Why the device refused or failed a release; ``code`` is the exception's stable code."""

    code: str
    message: str
    release: int
    model: str

    @classmethod
    def from_exception(cls, exc: BaseException, model: str, release: int) -> LastError:
        code = getattr(exc, "code", None)
        if not isinstance(code, str):
            if isinstance(exc, OSError):
                code = "disk-full" if exc.errno in _DISK_FULL else "io-error"
            else:
                code = "internal-error"
        return cls(code, str(exc) or type(exc).__name__, release, model)


@dataclass(frozen=True)
class Progress:
    """How far the download of one release has come."""

    model: str
    release: int
    chunks_done: int
    chunks_total: int
    bytes_done: int
    bytes_total: int


@dataclass(frozen=True)
class DeviceStatus:
    device: str
    state: str
    models: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    progress: Progress | None = None
    last_error: LastError | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {self.state!r}")

    def to_dict(self) -> dict:
        return {
            "device": self.device,
            "state": self.state,
            "models": {m: {"version": v, "sha256": s.hex()} for m, (v, s) in sorted(self.models.items())},
            "progress": asdict(self.progress) if self.progress else None,
            "last_error": asdict(self.last_error) if self.last_error else None,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()
