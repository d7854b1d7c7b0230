"""The plan and the judgement of a staged rollout (publisher.rollout.waves, tally, state), without a broker:
statuses as `rankcast status` reads them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from publisher.errors import ConfigError
from publisher.release.fleet_status import FleetReport, parse_status
from publisher.rollout.state import RolloutState, load_or_start
from publisher.rollout.tally import Verdict, tally, verdict
from publisher.rollout.waves import AbortPolicy, Wave, parse_waves
from simulator.testbed import synthetic

MODEL = "digits"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    key, _ = synthetic.make_keypair(tmp_path_factory.mktemp("keys"))
    return synthetic.make_full_release(synthetic.random_model_file(1), MODEL, 2, key).manifest


def _status(device: str, version: int, error: str | None = None) -> tuple[str, bytes]:
    last_error = None if error is None else {"code": error, "message": "x", "release": 2, "model": MODEL}
    body = {"device": device, "state": "error" if error else "idle", "models": {MODEL: {"version": version}},
            "last_error": last_error}
    return f"rankcast/devices/{device}/status", json.dumps(body).encode()


def _fleet(statuses) -> FleetReport:
    return FleetReport([parse_status(*status) for status in statuses], 0.0)


def _inside(release, percent: float, count: int, outside: bool = False) -> list[str]:
    cohort = replace(release, rollout_percent=percent)
    ids = (f"device-{i:04d}" for i in range(100_000))
    return [d for d in ids if cohort.in_rollout(d) != outside][:count]


def test_waves_must_rise_to_100() -> None:
    assert [w.percent for w in parse_waves("1,10,50,100", 60, 2)] == [1, 10, 50, 100]
    for bad in ("10,5,100", "0,100", "1,10,50", "one,100"):
        with pytest.raises(ConfigError, match="--waves"):
            parse_waves(bad, 60, 2)


def test_failures_that_count_halt_once_enough_devices_finished(release) -> None:
    policy = AbortPolicy(threshold=0.5, min_devices=2)
    wave = Wave(10.0, soak_s=0.0, min_devices=1)
    first, second = _inside(release, 10.0, 2)
    one_failed = tally(_fleet([_status(first, 1, "bad-hash")]), release, 10.0, 0.0, policy)
    assert one_failed.failed == {first: "bad-hash"} and verdict(one_failed, wave, policy, 0.0) is Verdict.WAIT
    both = tally(_fleet([_status(first, 1, "bad-hash"), _status(second, 2)]), release, 10.0, 0.0, policy)
    assert verdict(both, wave, policy, 0.0) is Verdict.HALT, "1 of 2 failed: 50 %"
    not_counted = tally(_fleet([_status(first, 1, "disk-full"), _status(second, 2)]), release, 10.0, 0.0, policy)
    assert not not_counted.failed and verdict(not_counted, wave, policy, 0.0) is Verdict.ADVANCE


def test_a_wave_moves_on_after_its_soak_once_the_devices_it_added_run_the_release(release) -> None:
    policy, wave = AbortPolicy(), Wave(50.0, soak_s=600.0, min_devices=2)
    earlier = _inside(release, 10.0, 1)
    added = [d for d in _inside(release, 50.0, 10) if d not in earlier][:2]
    outside = _inside(release, 50.0, 3, outside=True)
    statuses = [_status(earlier[0], 2), _status(added[0], 2), _status(added[1], 1)]
    statuses += [_status(d, 1) for d in outside]
    counts = tally(_fleet(statuses), release, 50.0, 10.0, policy)
    assert counts.known == 6 and counts.joined == 2 and counts.joined_succeeded == 1
    assert verdict(counts, wave, policy, 601.0) is Verdict.WAIT, "the earlier wave's device does not count"
    statuses[2] = _status(added[1], 2)
    counts = tally(_fleet(statuses), release, 50.0, 10.0, policy)
    assert verdict(counts, wave, policy, 599.0) is Verdict.WAIT and verdict(counts, wave, policy, 600.0) is \
        Verdict.ADVANCE


def test_no_status_at_all_is_never_a_reason_to_widen(release) -> None:
    counts = tally(_fleet([]), release, 1.0, 0.0, AbortPolicy())
    assert verdict(counts, Wave(1.0, 0.0, 1), AbortPolicy(), 1e6) is Verdict.WAIT


def test_a_state_file_goes_on_only_with_the_same_release_and_waves(tmp_path) -> None:
    path = tmp_path / "rollout.json"
    state = RolloutState(MODEL, 2, "ab" * 32, [10.0, 100.0], wave=1, wave_started=5.0)
    state.save(path)
    assert load_or_start(path, RolloutState(MODEL, 2, "ab" * 32, [10.0, 100.0])) == state
    with pytest.raises(ConfigError, match="another --state"):
        load_or_start(path, RolloutState(MODEL, 3, "cd" * 32, [10.0, 100.0]))
    path.write_text("{junk")
    with pytest.raises(ConfigError, match="not a rollout state"):
        load_or_start(path, state)
