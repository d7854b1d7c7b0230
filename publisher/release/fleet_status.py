"""The fleet at a glance: every device's retained status, summarised per version and per state.

Statuses follow the JSON that device_client.status documents; a malformed one is listed as such
rather than hidden, since a device that reports garbage is news too. A device whose last status is
older than twice its heartbeat (plus a minute of clock skew) and does not say offline is **stale**: it
went silent without its last will reaching the broker, or its clock is wrong.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from codec.status_message import read_status
from codec.topics import presence_beside, presence_filter, status_filter
from publisher.release.session import BrokerSession

#: Seconds of clock difference between a device and the reader that still do not make it stale.
STALE_SKEW_S = 60.0


@dataclass(frozen=True)
class DeviceRow:
    """One device as its status describes it."""

    device: str
    state: str
    versions: dict[str, int]
    progress: dict | None
    last_error: dict | None
    sent: float | None = None
    heartbeat: float | None = None
    #: The status's "trust" (a device with a trust root): the root it holds, models running a release whose
    #: key was revoked, the last root it refused.
    trust: dict | None = None
    #: Seconds the device client had been running when it sent the status, and its TFLite runtime.
    uptime: float | None = None
    runtime: str | None = None

    def uptime_at(self, now: float) -> float | None:
        """How long the client has been running at ``now``, if it still is (its uptime when it sent the
        status, plus the time since), else its uptime when it last spoke."""
        if self.uptime is None or self.sent is None or self.state in ("offline", "invalid") or self.stale(now):
            return self.uptime
        return self.uptime + max(0.0, now - self.sent)

    def stale(self, now: float) -> bool:
        """Silent for longer than its heartbeat allows, though not offline."""
        if self.sent is None or not self.heartbeat or self.state in ("offline", "invalid"):
            return False
        return now - self.sent > 2 * self.heartbeat + STALE_SKEW_S

    def to_dict(self, now: float) -> dict:
        return {"device": self.device, "state": self.state, "versions": self.versions,
                "progress": self.progress, "last_error": self.last_error, "sent": self.sent,
                "stale": self.stale(now), "trust": self.trust, "uptime": self.uptime,
                "uptime_now": self.uptime_at(now), "runtime": self.runtime}


@dataclass(frozen=True)
class FleetReport:
    devices: list[DeviceRow]
    #: When the statuses were read (Unix time).
    read_at: float

    def versions(self) -> dict[str, dict[int, int]]:
        """model -> version -> number of devices running it."""
        counts: dict[str, Counter] = {}
        for row in self.devices:
            for model, version in row.versions.items():
                counts.setdefault(model, Counter())[version] += 1
        return {model: dict(sorted(c.items())) for model, c in sorted(counts.items())}

    def states(self) -> dict[str, int]:
        return dict(sorted(Counter(row.state for row in self.devices).items()))

    def stale(self) -> list[DeviceRow]:
        return [row for row in self.devices if row.stale(self.read_at)]

    def to_dict(self) -> dict:
        return {
            "devices": [row.to_dict(self.read_at) for row in self.devices],
            "versions": {m: {str(v): n for v, n in c.items()} for m, c in self.versions().items()},
            "states": self.states(),
            "stale": len(self.stale()),
        }


def read_fleet(session: BrokerSession, prefix: str, model: str | None = None) -> FleetReport:
    """The retained status of every device (that follows ``model``, if given), offline where its presence
    says so."""
    retained = session.retained([status_filter(prefix), presence_filter(prefix)])
    rows = [parse_status(topic, payload, retained.get(presence_beside(topic))) for topic, payload in retained.items()
            if topic.endswith("/status")]
    if model is not None:
        rows = [row for row in rows if _concerns(row, model)]
    return FleetReport(sorted(rows, key=lambda row: row.device), time.time())


def parse_status(topic: str, payload: bytes, presence: bytes | None = None) -> DeviceRow:
    """A status message as a row, keyed by the device id its topic names (the ACL lets only that device
    write there), in state "offline" when ``presence`` (the retained message beside it) says so; a malformed
    one, or one whose own ``device`` field names another device, becomes state "invalid" with the reason,
    and counts for no version."""
    device = topic.split("/")[-2]
    try:
        status = read_status(payload, presence)
        models = status["models"]
        if status["device"] != device:
            return DeviceRow(device, "invalid", {}, None, {
                "code": "device-mismatch", "message": f"the status on {device}'s topic claims to be device "
                f"{str(status['device'])[:64]!r}: not counted (a device credential used for another, or a bug)"})
        return DeviceRow(
            device=device, state=str(status["state"]),
            versions={str(m): int(info["version"]) for m, info in models.items()},
            progress=status["progress"], last_error=status["last_error"],
            sent=_seconds(status.get("sent")), heartbeat=_seconds(status.get("heartbeat")),
            trust=status["trust"] if isinstance(status.get("trust"), dict) else None,
            uptime=_seconds(status.get("uptime")),
            runtime=str(status["runtime"])[:64] if isinstance(status.get("runtime"), str) else None,
        )
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        return DeviceRow(device, "invalid", {}, None, {"code": "bad-status", "message": f"unreadable status: {exc}"})


def format_report(report: FleetReport) -> str:
    """A table with one row per device, then the counts per version and per state, and the stale ones."""
    lines = [f"{'DEVICE':<24} {'STATE':<16} {'VERSIONS':<24} {'LAST SEEN':<14} {'UP':<7} LAST ERROR"]
    for row in report.devices:
        versions = ", ".join(f"{m}={v}" for m, v in sorted(row.versions.items())) or "-"
        state = row.state
        if row.progress:
            state += f" {row.progress.get('chunks_done', '?')}/{row.progress.get('chunks_total', '?')}"
        seen = "-" if row.sent is None else _ago(report.read_at - row.sent) + (" STALE" if row.stale(report.read_at)
                                                                              else "")
        error = row.last_error
        problem = f"[{error.get('code')}] release {error.get('release', '?')}: {error.get('message')}" if error else ""
        up = "-" if row.uptime is None else _span(row.uptime_at(report.read_at))
        lines.append(f"{row.device:<24} {state:<16} {versions:<24} {seen:<14} {up:<7} {problem}".rstrip())
    lines.append("")
    for model, counts in report.versions().items():
        lines.append(f"{model}: " + ", ".join(f"version {v}: {n}" for v, n in counts.items()))
    states = ", ".join(f"{s} {n}" for s, n in report.states().items())
    lines.append(f"{len(report.devices)} devices" + (f": {states}" if states else " (no status retained yet)"))
    runtimes = Counter(row.runtime or "none" for row in report.devices if row.state != "invalid")
    if any(name != "none" for name in runtimes):
        lines.append("TFLite runtimes: " + ", ".join(f"{name}: {n}" for name, n in sorted(runtimes.items())))
    lines += _trust_lines(report.devices)
    stale = report.stale()
    if stale:
        lines.append(f"{len(stale)} stale (silent past twice their heartbeat, not offline): "
                     + ", ".join(row.device for row in stale))
    return "\n".join(lines)


def _trust_lines(rows: list[DeviceRow]) -> list[str]:
    """The trust roots devices hold, and who still runs a release signed by a revoked key."""
    roots = Counter(row.trust.get("root") for row in rows if row.trust)
    lines = [("trust roots: " + ", ".join(f"v{v}: {n}" for v, n in sorted(roots.items(), key=str)))] if roots else []
    revoked = [f"{row.device} ({', '.join(map(str, row.trust['revoked']))})" for row in rows
               if row.trust and isinstance(row.trust.get("revoked"), list) and row.trust["revoked"]]
    if revoked:
        lines.append(f"{len(revoked)} running a release signed by a revoked key (publish one signed by a listed "
                     f"key): {', '.join(revoked)}")
    refused = [f"{row.device} (v{row.trust['refused_root'].get('version')} "
               f"[{row.trust['refused_root'].get('code')}])" for row in rows
               if row.trust and isinstance(row.trust.get("refused_root"), dict)]
    if refused:
        lines.append(f"{len(refused)} refused a trust root: {', '.join(refused)}")
    return lines


def _ago(seconds: float) -> str:
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _concerns(row: DeviceRow, model: str) -> bool:
    mentioned = [(row.progress or {}).get("model"), (row.last_error or {}).get("model")]
    return model in row.versions or model in mentioned
