"""What a fleet run leaves behind: report.json, report.png, devices.csv and the table printed at the end.

report.json:
    {"devices": int, "applied": int, "failed": int,
     "strategies": [{"name": str, "update_bytes": int, "wire_bytes_down": int, "wire_bytes_up": int,
                     "applied": int, "completion_s": {"p50": float, "p95": float, "max": float}}]}

``devices`` is the fleet size; each strategy runs the whole fleet, so the top-level ``applied`` and
``failed`` add up the strategies' runs (with one strategy they count devices). ``failed`` includes
devices that did not finish before the timeout. Completion times are link seconds from the start of
publishing to the device running the new model, over the devices that applied it (null if none did).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from simulator.fleet.results import FleetResult, StrategyResult


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    position = (len(sorted_values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def completion(strategy: StrategyResult) -> dict[str, float | None]:
    times = strategy.completion_times()
    if not times:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(percentile(times, 0.5), 3), "p95": round(percentile(times, 0.95), 3),
            "max": round(times[-1], 3)}


def report_dict(result: FleetResult) -> dict:
    strategies = [
        {
            "name": s.name, "update_bytes": s.update_bytes, "wire_bytes_down": s.wire_bytes_down,
            "wire_bytes_up": s.wire_bytes_up, "applied": s.applied, "completion_s": completion(s),
        }
        for s in result.strategies
    ]
    return {
        "devices": result.config.devices,
        "applied": sum(s.applied for s in result.strategies),
        "failed": sum(s.failed for s in result.strategies),
        "strategies": strategies,
    }


def write_report(result: FleetResult, out: Path) -> dict:
    """Write DIR/report.json, DIR/report.png and DIR/devices.csv; returns the report.json document."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    document = report_dict(result)
    (out / "report.json").write_text(json.dumps(document, indent=2) + "\n")
    write_devices_csv(result, out / "devices.csv")
    plot_report(result, out / "report.png")
    return document


def write_devices_csv(result: FleetResult, path: Path) -> None:
    """A row per device and strategy: link, outcome, error code, completion, bytes, reconnects, losses."""
    columns = ("strategy", "device", "link", "outcome", "error", "completion_s", "bytes_down", "bytes_up",
               "reconnects", "lost_segments", "cuts")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for strategy in result.strategies:
            for d in strategy.devices:
                writer.writerow((strategy.name, d.device_id, d.link, d.outcome, d.error or "",
                                 "" if d.completion_s is None else f"{d.completion_s:.3f}", d.bytes_down,
                                 d.bytes_up, d.reconnects, d.lost_segments, d.cuts))


def plot_report(result: FleetResult, path: Path) -> None:
    """Completion-time CDF per strategy (left) and wire bytes per device per strategy (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cdf, bars) = plt.subplots(1, 2, figsize=(11, 4.2))
    devices = result.config.devices
    for strategy in result.strategies:
        times = strategy.completion_times()
        if times:
            fractions = [(i + 1) / devices for i in range(len(times))]
            cdf.step([0.0, *times], [0.0, *fractions], where="post", label=f"{strategy.name} ({strategy.applied}/"
                     f"{devices})")
    cdf.set_xlabel("time to running the release (link seconds)")
    cdf.set_ylabel("fraction of the fleet")
    cdf.set_ylim(0, 1.02)
    cdf.grid(alpha=0.3)
    cdf.legend(loc="lower right")
    cdf.set_title(f"{devices} devices: completion-time CDF")
    names = [s.name for s in result.strategies]
    x = range(len(names))
    per_device = max(1, devices)
    down = [s.wire_bytes_down / per_device / 1024 for s in result.strategies]
    up = [s.wire_bytes_up / per_device / 1024 for s in result.strategies]
    update = [s.update_bytes / 1024 for s in result.strategies]
    width = 0.27
    bars.bar([i - width for i in x], update, width, label="update payload")
    bars.bar(list(x), down, width, label="wire down / device")
    bars.bar([i + width for i in x], up, width, label="wire up / device")
    bars.set_xticks(list(x), names)
    bars.set_ylabel("KiB")
    bars.set_yscale("log")
    bars.grid(alpha=0.3, axis="y")
    bars.legend()
    bars.set_title("bytes per strategy")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report_table(result: FleetResult) -> str:
    """The table printed at the end of `rankcast simulate`."""
    header = (f"{'strategy':<12} {'update B':>10} {'down B/dev':>11} {'up B/dev':>9} {'applied':>9} "
              f"{'p50 s':>8} {'p95 s':>8} {'max s':>8} {'reconn':>7}")
    lines = [header, "-" * len(header)]
    devices = result.config.devices
    for s in result.strategies:
        c = completion(s)
        cells = [f"{'-' if c[k] is None else f'{c[k]:.1f}':>8}" for k in ("p50", "p95", "max")]
        lines.append(
            f"{s.name:<12} {s.update_bytes:>10,} {s.wire_bytes_down // devices:>11,} {s.wire_bytes_up // devices:>9,} "
            f"{f'{s.applied}/{devices}':>9} {' '.join(cells)} {sum(d.reconnects for d in s.devices):>7}"
        )
    links: dict[str, int] = {}
    for d in result.strategies[0].devices if result.strategies else ():
        links[d.link] = links.get(d.link, 0) + 1
    lines.append(f"links: {', '.join(f'{n} x{c}' for n, c in links.items())}; time scale "
                 f"{result.config.time_scale:g} (times are link time)")
    failures = {}
    for s in result.strategies:
        for d in s.devices:
            if d.outcome != "applied":
                failures[(s.name, d.error or d.outcome)] = failures.get((s.name, d.error or d.outcome), 0) + 1
    for (name, why), count in sorted(failures.items()):
        lines.append(f"{name}: {count} device(s) did not apply: {why}")
    return "\n".join(lines)
