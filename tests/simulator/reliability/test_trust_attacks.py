"""The trust root attacks against a real device process over Mosquitto (simulator.reliability.trust_attacks),
run once."""

from __future__ import annotations

import pytest

from simulator.reliability import trust_attacks

pytestmark = pytest.mark.slow


def test_every_attack_on_the_trust_root_is_refused_and_the_genuine_rotation_taken(run_case) -> None:
    outcome, workdir = run_case(trust_attacks.CASES[0])
    assert outcome.ok, outcome.summary()
    assert outcome.runs == outcome.facts["checks"] == 9
    kept = sorted(p.name for p in (workdir / "device" / "models" / ".trust").glob("root.*"))
    assert kept == ["root.2", "root.3"], "the device kept the roots it walked (v1 is its provisioned one)"
