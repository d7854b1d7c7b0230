"""What the dashboard page shows, as JSON: devices by version and state, each model's latest release and the
wave it is in (its cohort, who runs it, who failed and with what), errors by code, stale devices, the
release history, and a row per device.

Built from a FeedSnapshot on every request, so the page is as current as the broker. Statuses are read by
publisher.release.fleet_status (keyed by the topic's device id; a mismatched or malformed one counts for no
version). Manifests are read without their signatures: the broker's ACL lets only publishers write them, and
devices verify every one; the page shows what was published. A ``rankcast rollout run`` state file, when
given, adds the plan: its waves, the one it is in, and what the earlier ones ended with.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from codec.errors import UpdateError
from codec.manifest import Manifest, read_manifest_unverified
from codec.topics import presence_beside
from publisher.dashboard.feed import FeedSnapshot
from publisher.errors import ConfigError
from publisher.release.fleet_status import FleetReport, parse_status
from publisher.rollout.state import HALTED, RolloutState
from publisher.rollout.tally import tally
from publisher.rollout.waves import AbortPolicy

#: What counts as a wave's failure: the release's own faults, as `rollout run` counts them by default.
FAILURES = AbortPolicy()
#: Device rows the page lists at most (problems first); the counts always cover the whole fleet.
MAX_ROWS = 500


def fleet_view(feed: FeedSnapshot, now: float, rollout_states: tuple[Path, ...] = ()) -> dict:
    """The page's data for the feed's topics at ``now`` (Unix time)."""
    parsed = (parse_status(topic, payload, feed.presence.get(presence_beside(topic))) for topic, payload in
            feed.statuses.items())
    report = FleetReport(sorted(parsed, key=lambda row: row.device), now)
    latest, releases = _manifests(feed.manifests)
    plans = [state for state in map(_read_state, rollout_states) if state is not None]
    errors = Counter(str(row.last_error.get("code")) for row in report.devices if row.last_error)
    rows = sorted(report.devices, key=lambda row: (not (row.last_error or row.stale(now)), row.device))
    return {
        "read_at": now,
        "connection": {"connected": feed.connected, "problem": feed.problem, "since": feed.since},
        "devices": len(report.devices),
        "states": report.states(),
        "errors": dict(sorted(errors.items())),
        "stale": [{"device": row.device, "last_seen": row.sent, "versions": row.versions} for row in report.stale()],
        "models": [_model(model, manifest, report, releases.get(model, []), plans)
                   for model, manifest in sorted(latest.items())],
        "rows": [row.to_dict(now) for row in rows[:MAX_ROWS]],
        "rows_left_out": max(0, len(rows) - MAX_ROWS),
    }


def _manifests(messages: dict[str, bytes]) -> tuple[dict[str, Manifest], dict[str, list[Manifest]]]:
    """The latest manifest of each model, and each model's retained releases (newest first); unreadable
    envelopes are left out (devices refuse them too)."""
    latest: dict[str, Manifest] = {}
    releases: dict[str, list[Manifest]] = {}
    for topic, envelope in messages.items():
        try:
            manifest = read_manifest_unverified(envelope)
        except UpdateError:
            continue
        if topic.endswith(f"/models/{manifest.model}/manifest"):
            latest[manifest.model] = manifest
        else:
            releases.setdefault(manifest.model, []).append(manifest)
    return latest, {m: sorted(found, key=lambda r: (r.version, r.payload_kind), reverse=True)
                    for m, found in releases.items()}


def _model(model: str, latest: Manifest, report: FleetReport, releases: list[Manifest],
           plans: list[RolloutState]) -> dict:
    versions = report.versions().get(model, {})
    plan = next((p for p in plans if (p.model, p.version) == (model, latest.version)), None)
    before = plan.percents[plan.wave - 1] if plan is not None and 0 < plan.wave < len(plan.percents) else 0.0
    # a halted rollout's manifest is paused (0 %): its counts are those of the wave it halted in
    percent = plan.history[-1]["percent"] if plan is not None and plan.outcome == HALTED and plan.history \
        else latest.rollout_percent
    counts = tally(report, latest, percent, min(before, percent), FAILURES)
    return {
        "model": model,
        "versions": {str(v): n for v, n in versions.items()},
        "latest": _release(latest, versions),
        "wave": {"percent": percent, "paused": latest.rollout_percent == 0.0,
                 "cohort": len(counts.cohort), "succeeded": len(counts.succeeded),
                 "failed": dict(sorted(Counter(counts.failed.values()).items())),
                 "pending": len(counts.cohort) - counts.finished,
                 "plan": None if plan is None else {"percents": plan.percents, "wave": plan.wave,
                                                    "outcome": plan.outcome, "wave_started": plan.wave_started,
                                                    "history": plan.history}},
        "releases": [_release(release, versions) for release in releases] or [_release(latest, versions)],
    }


def _release(manifest: Manifest, versions: dict[int, int]) -> dict:
    return {"version": manifest.version, "kind": manifest.payload_kind, "created": manifest.created,
            "expires": manifest.expires, "payload_bytes": manifest.payload_length, "chunks": manifest.chunk_count,
            "rollout_percent": manifest.rollout_percent, "base_version": manifest.base_version,
            "running": versions.get(manifest.version, 0)}


def _read_state(path: Path) -> RolloutState | None:
    """A rollout run's state file, or None while it is absent or half written (the run renames it whole)."""
    try:
        return RolloutState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def rollout_state_check(path: Path) -> None:
    """Nothing, if ``path`` is absent (a run not started yet) or a rollout state; else ConfigError."""
    if path.exists() and _read_state(path) is None:
        raise ConfigError(f"{path} is not a `rankcast rollout run` state file; give the file its --state names")
