"""Hostile input during a download in progress, over a real Mosquitto to a real `rankcast device run`
process (simulator.reliability.hostile_download): each attack is answered with its code and the release
still completes with its target sha256, each chunk delivered once."""

from __future__ import annotations

import pytest

from simulator.reliability import hostile_download
from simulator.reliability.download_attacks import JUNK_FLOOD

CASES = {case.name: case for case in hostile_download.CASES}


def _facts(run_case, name: str) -> dict:
    outcome, _ = run_case(CASES[name])
    assert outcome.ok, outcome.summary()
    (facts,) = outcome.facts["rounds"]
    return facts


def test_every_attack_on_a_download_has_its_case_in_the_selftest() -> None:
    from simulator.reliability.runner import all_cases

    names = {case.name for case in all_cases()}
    assert set(CASES) <= names and len(CASES) == 9


@pytest.mark.slow
@pytest.mark.parametrize("name", ["download-junk-alternation", "download-junk-genuine-junk"])
def test_junk_around_the_genuine_manifest_costs_no_chunk_twice(run_case, name) -> None:
    assert _facts(run_case, name)["code"] == "bad-format"


@pytest.mark.slow
def test_a_forged_chunk_is_named_and_the_genuine_one_completes_the_release(run_case) -> None:
    facts = _facts(run_case, "download-forged-chunk")
    assert facts["code"] == "bad-chunk" and facts["index"] >= 0


@pytest.mark.slow
def test_a_flood_of_junk_envelopes_writes_nothing_to_the_device_disk(run_case) -> None:
    assert _facts(run_case, "download-junk-flood") == {"envelopes": JUNK_FLOOD, "changed_on_disk": 0}


@pytest.mark.slow
def test_odd_topic_numbers_are_ignored_by_the_release_tools(run_case) -> None:
    assert _facts(run_case, "download-odd-topic-numbers")["ignored_by_release_tools"] >= 3


@pytest.mark.slow
def test_a_forged_manifest_leaves_no_claim_in_the_status(run_case) -> None:
    assert _facts(run_case, "download-forged-status")["release_reported"] == 0


@pytest.mark.slow
def test_another_fleets_release_is_refused_without_fetching_it(run_case) -> None:
    facts = _facts(run_case, "download-other-fleet")
    assert facts["code"] == "wrong-fleet" and facts["staging_chunks_fetched"] == 0 and facts["release"] > 2


@pytest.mark.slow
def test_a_deleted_manifest_is_reported_live_and_after_a_restart(run_case) -> None:
    facts = _facts(run_case, "download-deleted-manifest")
    assert facts["restarted"] and facts["release"] == 2


@pytest.mark.slow
def test_a_replayed_manifest_is_noticed(run_case) -> None:
    assert _facts(run_case, "download-replayed-manifest") == {"code": "replayed", "replayed": 1}
