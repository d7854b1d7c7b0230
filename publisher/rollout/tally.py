"""How a wave stands, from the devices' retained statuses: who is in its cohort, who runs the release, who
failed with a code that counts; and what the rollout does next."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from codec.manifest import Manifest
from publisher.release.fleet_status import FleetReport
from publisher.rollout.waves import AbortPolicy, Wave


class Verdict(Enum):
    WAIT = "wait"
    ADVANCE = "advance"
    HALT = "halt"


@dataclass(frozen=True)
class Tally:
    """The cohort of a wave (device ids), those running the release, those failed (id -> code), and how many
    devices of the model reported at all."""

    cohort: tuple[str, ...]
    succeeded: tuple[str, ...]
    failed: dict[str, str]
    known: int = 0
    #: Of the cohort, those the wave before did not hold, and how many of them run the release.
    joined: int = 0
    joined_succeeded: int = 0

    @property
    def finished(self) -> int:
        return len(self.succeeded) + len(self.failed)

    def to_dict(self) -> dict:
        return {"cohort": len(self.cohort), "succeeded": len(self.succeeded), "joined": self.joined,
                "failed": dict(sorted(self.failed.items()))}


def tally(report: FleetReport, release: Manifest, percent: float, before: float, policy: AbortPolicy) -> Tally:
    """The wave at ``percent`` (after one at ``before``) of ``release`` as the statuses in ``report`` show
    it (only valid statuses of devices that follow the model count)."""
    cohort_of, earlier = replace(release, rollout_percent=percent), replace(release, rollout_percent=before)
    cohort, succeeded, failed, known, joined, joined_succeeded = [], [], {}, 0, 0, 0
    for row in report.devices:
        known += row.state != "invalid"
        if row.state == "invalid" or not cohort_of.in_rollout(row.device):
            continue
        cohort.append(row.device)
        new = not earlier.in_rollout(row.device)
        joined += new
        error = row.last_error or {}
        if row.versions.get(release.model) == release.version:
            succeeded.append(row.device)
            joined_succeeded += new
        elif error.get("code") in policy.codes and error.get("release") == release.version:
            failed[row.device] = str(error["code"])
    return Tally(tuple(cohort), tuple(succeeded), failed, known, joined, joined_succeeded)


def verdict(counts: Tally, wave: Wave, policy: AbortPolicy, soaked_s: float) -> Verdict:
    """HALT once enough devices finished and too many failed; ADVANCE once the wave soaked and enough of
    the devices it added run the release (all of them, when it added fewer; a wave that added none moves on
    after its soak, but never while no device of the model has reported at all); else WAIT."""
    if counts.finished >= policy.min_devices and len(counts.failed) >= policy.threshold * counts.finished:
        return Verdict.HALT
    if counts.known and soaked_s >= wave.soak_s and counts.joined_succeeded >= min(wave.min_devices, counts.joined):
        return Verdict.ADVANCE
    return Verdict.WAIT
