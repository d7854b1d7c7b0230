"""The event loop's lag (simulator.fleet.loop_lag): small on an idle loop, the blocked share on a busy one."""

from __future__ import annotations

import asyncio
import time

from simulator.fleet.loop_lag import MAX_LAG_SHARE, LoopLag


def _measure(blocking_s: float, rounds: int = 10, scale: float = 10.0) -> object:
    async def run():
        lag = LoopLag(scale=scale)
        lag.start()
        mark = lag.mark()
        for _ in range(rounds):
            await asyncio.sleep(0.05)
            time.sleep(blocking_s)  # a callback that holds the loop, as a CPU-starved loop is held
        await asyncio.sleep(0.03)  # the monitor wakes after the last hold
        report = lag.since(mark)
        await lag.stop()
        return report

    return asyncio.run(run())


def test_an_idle_loop_is_not_cpu_bound() -> None:
    report = _measure(0.0)
    assert report.share < MAX_LAG_SHARE and not report.cpu_bound and report.wall_s >= 0.5


def test_a_few_milliseconds_behind_in_a_short_run_is_noise() -> None:
    report = _measure(0.1, rounds=1, scale=1.0)  # 0.1 link seconds behind, however large a share
    assert report.share > MAX_LAG_SHARE and not report.cpu_bound, report


def test_a_loop_held_most_of_the_time_is_cpu_bound_by_about_that_share() -> None:
    report = _measure(0.15)
    assert report.cpu_bound and 0.6 < report.share < 0.9, report
    assert 0.14 <= report.worst_s < 0.3


def test_link_time_leaves_out_the_time_the_loop_was_behind() -> None:
    from simulator.fleet.link_proxy import LinkClock

    async def run() -> tuple[float, float]:
        lag = LoopLag(scale=10.0)
        lag.start()
        clock = LinkClock(10.0, lag)
        plain = LinkClock(10.0)
        await asyncio.sleep(0.05)
        before = clock.now()
        time.sleep(0.3)  # the loop held: no link moved
        right_after = clock.now()  # read before the monitor has woken to count the hold
        await asyncio.sleep(0.05)
        measured = clock.now(), plain.now()
        await lag.stop()
        assert before <= right_after <= measured[0] and right_after - before < 0.5, (before, right_after)
        return measured

    corrected, uncorrected = asyncio.run(run())
    assert uncorrected > 3.9 and 0.9 < corrected < 2.0, (corrected, uncorrected)


def test_a_link_sleep_lasts_its_link_time_when_the_loop_falls_behind_meanwhile() -> None:
    from simulator.fleet.link_proxy import LinkClock

    async def run() -> float:
        lag = LoopLag(scale=10.0)
        lag.start()
        clock = LinkClock(10.0, lag)

        async def hold() -> None:
            await asyncio.sleep(0.03)
            time.sleep(0.05)  # in the middle of the sleep below

        holder = asyncio.get_running_loop().create_task(hold())
        start = clock.now()
        await clock.sleep(1.5)
        slept = clock.now() - start
        await holder
        await lag.stop()
        return slept

    assert 1.5 <= asyncio.run(run()) < 1.8
