"""The broker ACL matrix against the real Mosquitto (simulator.selftest.acl_matrix)."""

from __future__ import annotations

import pytest

from simulator.fleet import SimBroker
from simulator.selftest import acl_matrix
from simulator.selftest.acl_matrix import EXPECTED, AclMatrix


def test_the_whole_matrix_is_as_designed(run_case) -> None:
    outcome, _ = run_case(acl_matrix.CASES[0])
    assert outcome.ok, outcome.detail
    assert outcome.runs == 40


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> dict:
    with SimBroker(tmp_path_factory.mktemp("acl") / "broker", ["acl-t-a", "acl-t-b"]) as broker:
        matrix = AclMatrix(broker, broker.dev_port)
        cells = matrix.run()
    return {"cells": cells, "notes": matrix.notes}


def test_specific_cells(observed) -> None:
    cells = observed["cells"]
    assert cells["device-a", "manifest", "read"] is True
    assert cells["device-a", "manifest", "write"] is False       # a stolen device credential cannot publish
    assert cells["device-a", "chunks", "write"] is False
    assert cells["device-a", "own-status", "write"] is True
    assert cells["device-a", "other-status", "write"] is False   # nor forge another device's status
    assert cells["device-b", "other-status", "read"] is False
    assert cells["publisher", "other-status", "read"] is True
    assert cells["publisher", "manifest", "write"] is True
    assert not any(cells["anonymous", c, a] for c in acl_matrix.TOPIC_CLASSES for a in acl_matrix.ACCESS)
    assert any("anonymous: CONNECT refused" in note for note in observed["notes"])
    assert any("wrong-password: CONNECT refused" in note for note in observed["notes"])


def test_observed_equals_expected(observed) -> None:
    for identity, row in EXPECTED.items():
        for topic_class, (read, write) in row.items():
            assert observed["cells"][identity, topic_class, "read"] is read, (identity, topic_class, "read")
            assert observed["cells"][identity, topic_class, "write"] is write, (identity, topic_class, "write")
