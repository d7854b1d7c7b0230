"""The cheapest way from the model a device runs to the latest release: a chain of deltas, or the full file.

The latest manifest is one release; its index (codec.release_index) lists older retained releases and
the full file of the latest version. A delta step needs the model file its base sha256 names; a full
step needs nothing. Versions rise along a path, at most ``max_steps`` steps, and the path that
downloads the fewest bytes wins (fewer steps on a tie), so a device never downloads more than the full
release would cost when the index offers one (Mender's delta-or-full choice; Velopack's limit on
chained deltas).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from codec.manifest import Manifest

#: Deltas a device applies in a row at most before it takes the full release instead.
DEFAULT_MAX_STEPS = 8


@dataclass(frozen=True)
class Step:
    """One release on the path; ``manifest_sha256`` pins its retained manifest (None: the latest itself)."""

    version: int
    kind: str
    base_sha256: bytes | None
    target_sha256: bytes
    payload_length: int
    manifest_sha256: bytes | None = None

    @property
    def key(self) -> tuple[int, str]:
        return self.version, self.kind


def candidate_steps(latest: Manifest) -> list[Step]:
    """The latest release and every release its index lists."""
    steps = [Step(latest.version, latest.payload_kind, latest.base_sha256, latest.target_sha256,
                  latest.payload_length)]
    for entry in latest.index or ():
        steps.append(Step(entry.version, entry.kind, entry.base_sha256, entry.target_sha256, entry.payload_length,
                          entry.manifest_sha256))
    return steps


def plan_path(
    latest: Manifest, running_sha256: bytes | None, running_version: int | None, max_steps: int = DEFAULT_MAX_STEPS
) -> list[Step] | None:
    """The cheapest path from the running file (None: no model installed) to ``latest``'s target, or None."""
    steps = candidate_steps(latest)
    start = (running_sha256, -1 if running_version is None else running_version)
    queue: list[tuple[int, int, int, tuple[Step, ...]]] = [(0, 0, 0, ())]
    states = {0: start}  # queue entries carry an id of their state, so heapq never compares Steps
    settled: set[tuple[bytes | None, int, int]] = set()
    while queue:
        cost, length, state_id, path = heapq.heappop(queue)
        sha256, version = states[state_id]
        if sha256 == latest.target_sha256 and path:
            return list(path)
        if (sha256, version, length) in settled or length == max_steps:
            continue
        settled.add((sha256, version, length))
        for step in steps:
            if step.version > version and (step.kind == "full" or step.base_sha256 == sha256):
                states[len(states)] = (step.target_sha256, step.version)
                heapq.heappush(queue, (cost + step.payload_length, length + 1, len(states) - 1, (*path, step)))
    return None


def describe_miss(latest: Manifest, running_sha256: bytes | None, running_version: int | None) -> str:
    """Why no path exists, for the device's wrong-base error (what it runs, what the release needs)."""
    running = "no model" if running_sha256 is None else \
        f"version {running_version} (sha256 {running_sha256.hex()[:12]}…)"
    listed = ", ".join(f"{s.version} {s.kind}" for s in candidate_steps(latest)[1:]) or "none"
    return (
        f"release {latest.version} applies to version {latest.base_version} (sha256 "
        f"{(latest.base_sha256 or b'').hex()[:12]}…), this device runs {running}, and no release in its index "
        f"(listed: {listed}) leads there; publish a full release of version {latest.version}"
    )
