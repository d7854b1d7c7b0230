"""Broker restart mid-release (persistence on): the release completes, held chunks are not fetched again."""

from __future__ import annotations

import hashlib

import pytest

from simulator.reliability import broker_restart
from simulator.testbed.devices import DeviceHome
from simulator.testbed.synthetic import random_model_file

pytestmark = pytest.mark.slow


def test_a_broker_restart_mid_download_completes_without_refetching(run_case) -> None:
    outcome, _ = run_case(broker_restart.CASES[0])
    assert outcome.ok, outcome.summary()
    facts = outcome.facts
    assert facts["completed"] == facts["restarts"] == 1
    assert facts["spooled_before"] > 0 and facts["refetched"] == 0


def test_the_broker_really_restarted_from_its_database_and_the_file_is_the_release(run_case) -> None:
    outcome, workdir = run_case(broker_restart.CASES[0])
    pids = outcome.facts["broker_pids"]
    assert len(set(pids)) == len(pids) == outcome.facts["restarts"] + 1
    assert (workdir / "broker" / "mosquitto.log").read_text().count("starting") == len(pids), "Mosquitto's own log"
    assert (workdir / "broker" / "db" / "mosquitto.db").is_file()
    target = hashlib.sha256(random_model_file(2, broker_restart.SHAPES)).hexdigest()
    assert DeviceHome(workdir / "device").state(broker_restart.MODEL) == (2, target, target)
