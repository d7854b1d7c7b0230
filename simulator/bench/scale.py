"""The scale benchmark: how large a fleet this machine can put through a release in one process.

Each fleet size runs the small synthetic update (one strategy, factorised) over a time-scaled link;
for each it records completion, wall time, CPU seconds and peak memory of the simulator process and
of Mosquitto. A fleet "completes" when every device runs the release before the timeout. Sizes run
in increasing order and stop after the first one that does not complete.

Output: DIR/scale.json (a row per size) and the table printed at the end.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from simulator.fleet.config import FleetConfig
from simulator.fleet.inputs import load_update
from simulator.fleet.links import parse_link_mix
from simulator.fleet.report import completion
from simulator.fleet.runner import run_fleet
from simulator.testbed.synthetic import write_small_update

log = logging.getLogger("rankcast.simulator")


@dataclass(frozen=True)
class ScaleRow:
    devices: int
    applied: int
    completed: bool
    wall_s: float
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    cpu_s: float
    peak_rss_mib: float
    broker_cpu_s: float
    broker_peak_rss_mib: float
    reconnects: int


def run_scale_bench(
    devices: int | list[int] = 1000,
    out: Path = Path("bench-out"),
    *,
    link: str = "wifi",
    time_scale: float = 1.0,
    timeout_s: float = 600.0,
    wall_limit_s: float = 900.0,
) -> int:
    """Run fleets of ``devices`` (one size or several, ascending); print the table, write DIR/scale.json.

    Returns 0 if the largest size completed, 1 otherwise (the exit status for `rankcast bench fleet`).
    """
    sizes = sorted([devices] if isinstance(devices, int) else devices)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base, update, _ = write_small_update(out / "scale-inputs")
    inputs = load_update(base, update, ("factorised",))
    rows: list[ScaleRow] = []
    for size in sizes:
        print(f"scale: {size} devices on {link} (time scale {time_scale:g}) ...", file=sys.stderr, flush=True)
        rows.append(_one(size, inputs, out, link, time_scale, timeout_s, wall_limit_s))
        _write(rows, out, link, time_scale)
        print(format_row(rows[-1]), file=sys.stderr, flush=True)
        if not rows[-1].completed:
            break
    print(scale_table(rows))
    largest = max((r.devices for r in rows if r.completed), default=0)
    print(f"largest fleet that completed: {largest} devices; wrote {out / 'scale.json'}")
    return 0 if rows[-1].completed and rows[-1].devices == sizes[-1] else 1


def _one(size: int, inputs, out: Path, link: str, time_scale: float, timeout_s: float,
         wall_limit_s: float) -> ScaleRow:
    config = FleetConfig(devices=size, links=parse_link_mix(link), time_scale=time_scale, timeout_s=timeout_s,
                         wall_limit_s=wall_limit_s, connect_wait_s=timeout_s)
    started = time.monotonic()
    result = run_fleet(config, inputs, out / "scale-work")
    strategy = result.strategies[0]
    times = completion(strategy)
    usage = strategy.usage
    return ScaleRow(size, strategy.applied, strategy.applied == size, round(time.monotonic() - started, 1),
                    times["p50"], times["p95"], times["max"], round(usage.cpu_s, 1), round(usage.peak_rss_mib, 1),
                    round(usage.broker_cpu_s, 1), round(usage.broker_peak_rss_mib, 1),
                    sum(d.reconnects for d in strategy.devices))


def _write(rows: list[ScaleRow], out: Path, link: str, time_scale: float) -> None:
    document = {"link": link, "time_scale": time_scale, "rows": [asdict(r) for r in rows]}
    (out / "scale.json").write_text(json.dumps(document, indent=2) + "\n")


def format_row(r: ScaleRow) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (f"{r.devices:>7} {f'{r.applied}/{r.devices}':>11} {r.wall_s:>7.1f} {seconds(r.p50_s):>7} "
            f"{seconds(r.p95_s):>7} {seconds(r.max_s):>7} {r.cpu_s:>7.1f} {r.peak_rss_mib:>8.0f} "
            f"{r.broker_cpu_s:>7.1f} {r.broker_peak_rss_mib:>8.0f} {r.reconnects:>6}")


def scale_table(rows: list[ScaleRow]) -> str:
    header = (f"{'devices':>7} {'applied':>11} {'wall s':>7} {'p50 s':>7} {'p95 s':>7} {'max s':>7} "
              f"{'CPU s':>7} {'RSS MiB':>8} {'mq CPU':>7} {'mq MiB':>8} {'reconn':>6}")
    return "\n".join([header, "-" * len(header), *map(format_row, rows)])
