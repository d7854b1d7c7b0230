"""Load: devices taking three releases back to back (simulator.reliability.load)."""

from __future__ import annotations

import hashlib

import pytest

from simulator.reliability import load


@pytest.mark.slow
def test_every_device_ends_on_the_last_version_and_none_is_ever_mixed(run_case) -> None:
    outcome, _ = run_case(load.CASES[0])
    assert outcome.ok, outcome.summary()
    facts = outcome.facts
    assert outcome.runs == facts["devices"] == facts["on_last"] == 100
    assert facts["mixed"] == 0 and not facts["timed_out"]
    assert facts["observations"] >= 2 * 100  # a sweep before publishing and at least one after
    assert set(facts["refusals"]) <= {"wrong-base@3"}  # release 3 seen before 2 was applied, nothing else


def test_the_versions_chain(tmp_path) -> None:
    files, (public, *releases) = load.build_versions(tmp_path)
    assert public.exists() and len(set(files.values())) == 4
    assert [r.manifest.version for r in releases] == [2, 3, 4]
    assert [r.manifest.payload_kind for r in releases] == ["delta", "delta", "full"]
    assert releases[1].manifest.base_sha256 == hashlib.sha256(files[2]).digest()
    assert releases[2].manifest.target_sha256 == hashlib.sha256(files[4]).digest()
