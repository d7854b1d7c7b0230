"""The broker ACL matrix against the real Mosquitto (simulator.reliability.acl_matrix), run once."""

from __future__ import annotations

import pytest

from simulator.reliability import acl_matrix
from simulator.reliability.acl_matrix import ACCESS, EXPECTED, IDENTITIES, TOPIC_CLASSES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def observed(run_case) -> dict[str, dict[str, bool]]:
    outcome, _ = run_case(acl_matrix.CASES[0])
    return outcome.facts["observed"]


def test_the_whole_matrix_is_as_designed(run_case) -> None:
    outcome, _ = run_case(acl_matrix.CASES[0])
    assert outcome.ok, outcome.summary()
    cells = 2 * len(IDENTITIES) * len(TOPIC_CLASSES) * len(ACCESS)
    assert outcome.runs == cells + 1 == 101, "both plain listeners, and the takeover on the device one"
    assert outcome.facts["mismatches"] == []


def test_every_observed_cell_equals_the_design(observed) -> None:
    for kind, identities in EXPECTED.items():
        cells = observed[f"{kind}-plain"]
        for identity, row in identities.items():
            for topic_class, (read, write) in row.items():
                assert cells[f"{identity}/{topic_class}/read"] is read, (kind, identity, topic_class, "read")
                assert cells[f"{identity}/{topic_class}/write"] is write, (kind, identity, topic_class, "write")


def test_a_stolen_device_credential_can_neither_publish_releases_nor_forge_another_status(observed) -> None:
    device, operator = observed["device-plain"], observed["operator-plain"]
    assert device["device-a/manifest/read"] and device["device-a/own-status/write"]
    assert not device["device-a/manifest/write"] and not device["device-a/chunks/write"]
    assert not device["device-a/other-status/write"] and not device["device-b/other-status/read"]
    assert not any(operator[f"device-a/{c}/{a}"] for c in TOPIC_CLASSES for a in ACCESS), "no way in as an operator"
    assert operator["publisher/other-status/read"] and operator["publisher/manifest/write"]


def test_each_listener_refuses_the_other_kind_of_account_at_connect(run_case, observed) -> None:
    outcome, _ = run_case(acl_matrix.CASES[0])
    refused = outcome.facts["refused_connect"]
    assert refused["device-plain"] == ["anonymous", "publisher", "wrong-password"]
    assert refused["operator-plain"] == ["anonymous", "device-a", "device-b", "wrong-password"]
    assert not any(observed["device-plain"][f"anonymous/{c}/{a}"] for c in TOPIC_CLASSES for a in ACCESS)
