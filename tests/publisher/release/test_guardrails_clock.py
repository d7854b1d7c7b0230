"""The publisher's checks against the broker's current release that need no broker (the rest, through the real
CLI and Mosquitto, are in tests/mqtt/test_guardrails.py)."""

from __future__ import annotations

import hashlib

import pytest

from codec.keys import generate_signing_key
from codec.payload import encode_payload
from codec.quantise import full_record
from codec.release import make_release
from publisher.errors import ClockBehindError, OtherFleetError
from publisher.release.guardrails import check_release

KEY = generate_signing_key()
PAYLOAD, LENGTH = encode_payload([full_record(b"model")])


def _manifest(created: int, fleet: str | None = None, percent: float = 100.0):
    return make_release(model="m", version=3, payload=PAYLOAD, decompressed_length=LENGTH, full=True,
                        target_sha256=hashlib.sha256(b"model").digest(), key=KEY, created=created, fleet=fleet,
                        rollout_percent=percent, rollout_salt="s").manifest


def test_signing_the_current_version_again_with_a_clock_behind_is_refused() -> None:
    current = _manifest(created=1_000_000, percent=10.0)
    check_release(_manifest(created=1_000_000), current, [current])  # the same second: devices take it
    check_release(_manifest(created=1_000_050), current, [current])
    with pytest.raises(ClockBehindError, match="10 s later") as refused:
        check_release(_manifest(created=999_990), current, [current])
    assert refused.value.code == "clock-behind"
    check_release(_manifest(created=999_990), current, [current], force=True)


@pytest.mark.parametrize(("current", "candidate", "allowed"), [
    (None, "production", True), ("production", "production", True), ("production", None, False),
    ("production", "staging", False), (None, None, True),
])
def test_a_release_for_another_fleet_than_the_current_ones_is_refused(current, candidate, allowed) -> None:
    latest = _manifest(created=1_000_000, fleet=current)
    release = _manifest(created=1_000_001, fleet=candidate)
    if allowed:
        check_release(release, latest, [latest])
    else:
        with pytest.raises(OtherFleetError):
            check_release(release, latest, [latest])
