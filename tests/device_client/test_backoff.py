"""Reconnect delays: exponential, capped, jittered, and reset after a good connection."""

from __future__ import annotations

import random

from device_client.backoff import Backoff


def test_delays_double_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, rng=random.Random(4))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays[3:]}) > 1


def test_two_devices_do_not_reconnect_in_lockstep() -> None:
    first, second = Backoff(1.0, 60.0, random.Random(1)), Backoff(1.0, 60.0, random.Random(2))
    assert [first.next() for _ in range(5)] != [second.next() for _ in range(5)]


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0)
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 0.5
