"""The status a device publishes, retained, on {prefix}/devices/<id>/status (codec.status_message: empty
keys are left out; its presence, online or offline, is on {prefix}/devices/<id>/presence).

    {"device": str, "state": "idle|downloading|stalled|applying|error|rolled-back",
     "models": {"<model>": {"version": int, "sha256": hex16}},
     "progress": {"model", "release", "chunks_done", "chunks_total", "bytes_done", "bytes_total",
                  "missing", "last_progress"}?,
     "last_error": {"code": str, "message": str, "release": int, "model": str}?,
     "sent": int, "heartbeat": int, "uptime": int, "runtime": str?,
     "trust": {"root": int, "revoked": [model, ...], "refused_root": {"version": int, "code": str, "sha256": hex16}}?}

``sent`` is the device's Unix time when it sent the status, ``heartbeat`` the most seconds it lets pass
between two statuses while online, so a reader can tell a silent device from a quiet one; ``uptime`` the
seconds since the device client started, and ``runtime`` the TFLite runtime it runs .tflite models with
("tflite-runtime 2.14.0", "ai-edge-litert 1.2.0"; left out if none is installed). ``sha256`` is the first
16 hex digits of the running file's hash (64 bits: enough to tell files apart at a glance). In
``progress``, ``missing`` counts the chunks (and catch-up manifests) still to come and ``last_progress``
is the Unix time the last of them arrived; ``stalled`` means nothing arrived for the stall deadline;
``rolled-back`` that an operator rolled the model back and the device holds the undone release back
(``last_error`` names it) until a newer one is published. ``trust`` is there only for a device with a
trust root: the root version it holds, the models still running a release whose key was since revoked,
and the last root it refused (``revoked`` and ``refused_root`` only when there are any). Readers show
"offline" for a device whose presence says so.
"""

from __future__ import annotations

import errno
from dataclasses import asdict, dataclass, field

from codec.status_message import encode_status

STATES = ("idle", "downloading", "stalled", "applying", "error", "rolled-back")
#: States that last only while a release comes in: reported once they have lasted status_interval.
TRANSIENT_STATES = frozenset({"downloading", "applying"})
#: OSErrors that mean the device ran out of room for a file: no space left, a file-size limit, a quota.
_DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
#: The longest message a status carries (a refusal's message may quote what it refused).
MAX_MESSAGE = 300


def sanitised(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as printable ASCII on one line, at most ``limit`` characters (for statuses and logs)."""
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in text.replace("\n", " "))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


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
        return cls(code, sanitised(str(exc) or type(exc).__name__), release, model)


@dataclass(frozen=True)
class Progress:
    """How far the download of one release has come."""

    model: str
    release: int
    chunks_done: int
    chunks_total: int
    bytes_done: int
    bytes_total: int
    missing: int
    last_progress: float


@dataclass(frozen=True)
class DeviceStatus:
    device: str
    state: str
    models: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    progress: Progress | None = None
    last_error: LastError | None = None
    #: Not compared: two statuses that say the same are equal whenever they were made.
    sent: float = field(default=0.0, compare=False)
    heartbeat: float = 0.0
    uptime: float = field(default=0.0, compare=False)
    runtime: str | None = None
    #: In root mode (device_client.trust): {"root": version, "revoked": [models running a release signed by
    #: a revoked key]?, "refused_root": {"version", "code"}?}; None in simple mode (and left out).
    trust: dict | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {self.state!r}")

    def to_dict(self) -> dict:
        return {
            "device": self.device,
            "state": self.state,
            "models": {m: {"version": v, "sha256": s.hex()[:16]} for m, (v, s) in sorted(self.models.items())},
            "progress": asdict(self.progress) if self.progress else None,
            "last_error": asdict(self.last_error) if self.last_error else None,
            "sent": int(self.sent),
            "heartbeat": int(self.heartbeat) if float(self.heartbeat).is_integer() else self.heartbeat,
            "uptime": int(self.uptime),
            "runtime": self.runtime,
            "trust": self.trust,
        }

    def to_json(self) -> bytes:
        """The compact wire form (codec.status_message.encode_status)."""
        return encode_status(self.to_dict())
