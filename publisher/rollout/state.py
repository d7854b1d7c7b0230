"""A staged rollout's progress on disk, so that `rankcast rollout run` killed and started again goes on
where it was: the release it drives, the wave it is in and since when, what each wave ended with, and
whether it completed or halted. Written whole to a temporary file and renamed over the old one."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from publisher.errors import ConfigError

RUNNING, COMPLETED, HALTED = "running", "completed", "halted"


@dataclass
class RolloutState:
    """``wave`` indexes ``percents``; ``wave_started`` is when its manifest went out (Unix time, None before)."""

    model: str
    version: int
    target_sha256: str
    percents: list[float]
    wave: int = 0
    wave_started: float | None = None
    outcome: str = RUNNING
    history: list[dict] = field(default_factory=list)

    def save(self, path: Path) -> None:
        part = path.with_name(f"{path.name}.part")
        part.write_text(json.dumps(asdict(self), indent=1) + "\n")
        os.replace(part, path)


def load_or_start(path: Path, fresh: RolloutState) -> RolloutState:
    """The state in ``path`` if it drives the same release through the same waves, ``fresh`` if there is
    none; ConfigError if it drives another (a state file per rollout)."""
    if not path.exists():
        return fresh
    try:
        state = RolloutState(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a rollout state ({exc}); move it away to start afresh") from None
    same = (state.model, state.version, state.target_sha256, state.percents) == (
        fresh.model, fresh.version, fresh.target_sha256, fresh.percents)
    if not same:
        raise ConfigError(f"{path} drives {state.model} release {state.version} through waves {state.percents}, not "
                          f"release {fresh.version} through {fresh.percents}: give another --state, or move it away")
    return state
