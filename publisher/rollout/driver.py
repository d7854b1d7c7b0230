"""`rankcast rollout run`: drive a published release through its waves, watching the devices' statuses, and
halt it (a signed paused manifest) when failures pass the abort policy. Its state is on disk
(publisher.rollout.state): started again, it goes on from the wave it was in, soak time included."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from codec.keys import SigningKey
from publisher.errors import NotLatestError
from publisher.release.fleet_status import read_fleet
from publisher.release.session import BrokerSession
from publisher.rollout.state import COMPLETED, HALTED, RUNNING, RolloutState, load_or_start
from publisher.rollout.steer import current_manifest, set_rollout
from publisher.rollout.tally import Tally, Verdict, tally, verdict
from publisher.rollout.waves import AbortPolicy, Wave


@dataclass(frozen=True)
class Rollout:
    """What to drive: ``version`` of ``model``, signed by ``key`` (and ``cosigners``), through ``waves``."""

    model: str
    version: int
    waves: tuple[Wave, ...]
    policy: AbortPolicy
    key: SigningKey
    prefix: str
    cosigners: Sequence[SigningKey] = ()


def run_rollout(session: BrokerSession, rollout: Rollout, state_path: Path, poll_s: float = 10.0,
                on_tally: Callable[[Wave, Tally, Verdict], None] | None = None,
                clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> RolloutState:
    """Run (or go on with) the rollout until it completes or halts; returns its final state."""
    release = current_manifest(session, rollout.model, rollout.prefix, rollout.key)
    fresh = RolloutState(rollout.model, rollout.version, release.target_sha256.hex(),
                         [wave.percent for wave in rollout.waves])
    state = load_or_start(state_path, fresh)
    if state.outcome == HALTED and release.version == rollout.version and release.rollout_percent != 0:
        _publish(session, rollout, 0.0)  # halted, but killed before the pause went out
    if state.outcome != RUNNING:
        return state
    if release.version != rollout.version:
        raise NotLatestError(f"{rollout.model}'s latest release is {release.version}, not {rollout.version}: a newer "
                             "release replaced it; the rollout stops here")
    while True:
        wave = rollout.waves[state.wave]
        if state.wave_started is None or release.rollout_percent != wave.percent:
            release = _publish(session, rollout, wave.percent)
            state.wave_started = state.wave_started or clock()
            state.save(state_path)
        before = rollout.waves[state.wave - 1].percent if state.wave else 0.0
        counts = tally(read_fleet(session, rollout.prefix, rollout.model), release, wave.percent, before,
                       rollout.policy)
        decided = verdict(counts, wave, rollout.policy, clock() - state.wave_started)
        if on_tally is not None:
            on_tally(wave, counts, decided)
        if decided is Verdict.WAIT:
            sleep(poll_s)
            continue
        state.history.append({"percent": wave.percent, "started": state.wave_started, "ended": clock(),
                              **counts.to_dict()})
        if decided is Verdict.HALT:
            state.outcome = HALTED
            state.save(state_path)  # first: started again, a halted rollout only makes sure of the pause
            _publish(session, rollout, 0.0)
            return state
        if state.wave + 1 == len(rollout.waves):
            state.outcome = COMPLETED
            state.save(state_path)
            return state
        state.wave, state.wave_started = state.wave + 1, None
        state.save(state_path)


def _publish(session: BrokerSession, rollout: Rollout, percent: float):
    return set_rollout(session, rollout.model, rollout.version, percent, rollout.key, rollout.prefix,
                       rollout.cosigners)
