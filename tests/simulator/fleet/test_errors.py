"""The fleet's one error hierarchy, and a fleet configuration that refuses what cannot run."""

from __future__ import annotations

import inspect

import pytest

from simulator.fleet import errors
from simulator.fleet.config import FleetConfig
from simulator.fleet.links import LinkMix, parse_link_mix


def test_every_fleet_error_is_a_fleet_error_and_a_value_error_with_a_distinct_code() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)]
    assert len(classes) == 4
    assert all(issubclass(c, errors.FleetError) and issubclass(c, ValueError) for c in classes)
    assert len({c.code for c in classes}) == len(classes)


@pytest.mark.parametrize(("options", "fragment"), [
    (dict(devices=0), "at least one device"), (dict(links=LinkMix()), "link profile"),
    (dict(time_scale=0.0), "positive"), (dict(timeout_s=-1.0), "positive"),
])
def test_a_fleet_that_cannot_run_is_refused_with_its_code(options, fragment) -> None:
    values = dict(devices=2, links=parse_link_mix("wifi")) | options
    with pytest.raises(errors.FleetConfigError, match=fragment) as refused:
        FleetConfig(**values)
    assert refused.value.code == "bad-fleet-config"
