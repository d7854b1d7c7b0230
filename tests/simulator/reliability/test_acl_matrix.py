"""The broker ACL matrix against the real Mosquitto (simulator.reliability.acl_matrix), run once."""

from __future__ import annotations

import pytest

from simulator.reliability import acl_matrix
from simulator.reliability.acl_matrix import ACCESS, EXPECTED, IDENTITIES, TOPIC_CLASSES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cells(run_case) -> dict[str, bool]:
    outcome, _ = run_case(acl_matrix.CASES[0])
    return outcome.facts["observed"]["plain"]


def test_the_whole_matrix_is_as_designed(run_case) -> None:
    outcome, _ = run_case(acl_matrix.CASES[0])
    assert outcome.ok, outcome.summary()
    assert outcome.runs == len(IDENTITIES) * len(TOPIC_CLASSES) * len(ACCESS) == 50
    assert outcome.facts["mismatches"] == []


def test_every_observed_cell_equals_the_design(cells) -> None:
    for identity, row in EXPECTED.items():
        for topic_class, (read, write) in row.items():
            assert cells[f"{identity}/{topic_class}/read"] is read, (identity, topic_class, "read")
            assert cells[f"{identity}/{topic_class}/write"] is write, (identity, topic_class, "write")


def test_a_stolen_device_credential_can_neither_publish_releases_nor_forge_another_status(cells) -> None:
    assert cells["device-a/manifest/read"] and cells["device-a/own-status/write"]
    assert not cells["device-a/manifest/write"] and not cells["device-a/chunks/write"]
    assert not cells["device-a/other-status/write"] and not cells["device-b/other-status/read"]
    assert cells["publisher/other-status/read"] and cells["publisher/manifest/write"]


def test_anonymous_clients_and_wrong_passwords_are_refused_at_connect(run_case, cells) -> None:
    outcome, _ = run_case(acl_matrix.CASES[0])
    assert outcome.facts["refused_connect"]["plain"] == ["anonymous", "wrong-password"]
    assert not any(cells[f"anonymous/{c}/{a}"] for c in TOPIC_CLASSES for a in ACCESS)
