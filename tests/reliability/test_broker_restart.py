"""Broker restart mid-release (persistence on): the release completes, held chunks are not fetched again."""

from __future__ import annotations

import hashlib

from simulator.selftest import broker_restart
from simulator.selftest.harness import make_model, store_state


def test_a_broker_restart_mid_download_completes_without_refetching(run_case) -> None:
    outcome, workdir = run_case(broker_restart.CASES[0])
    assert outcome.ok, outcome
    assert " 0 of them fetched again" in outcome.detail


def test_the_broker_really_restarted_from_its_database_and_the_file_is_the_release(run_case) -> None:
    _, workdir = run_case(broker_restart.CASES[0])
    log = (workdir / "broker" / "mosquitto.log").read_text()
    assert log.count("starting") >= 2, "mosquitto was not started twice"
    assert (workdir / "broker" / "db" / "mosquitto.db").is_file()
    target = hashlib.sha256(make_model(2, {"w": (128, 256)})).hexdigest()
    assert store_state(workdir / "device" / "device.toml", broker_restart.MODEL) == (2, target, target)
