"""What a fleet run leaves behind: report.json, report.png, devices.csv and the table printed at the end.

report.json:
    {"devices": int, "applied": int, "failed": int, "cpu_bound": bool,
     "strategies": [{"name": str, "update_bytes": int, "wire_bytes_down": int, "wire_bytes_up": int,
                     "applied": int, "completion_s": {"p50": float, "p95": float, "max": float},
                     "loop_lag": {"total_s", "worst_s", "wall_s", "share", "link_s", "cpu_bound", "max_share",
                                  "min_link_s"},
                     "bytes_per_device": {"payload_bytes": int, "down": {CATEGORY: float}, "up": {CATEGORY: float},
                                          "down_excluding_setup_minus_payload": float, "up_excluding_setup": float,
                                          "targets": {"down_excluding_setup_minus_payload": int,
                                                      "up_excluding_setup": int}}}]}

``devices`` is the fleet size; each strategy runs the whole fleet, so the top-level ``applied`` and
``failed`` add up the strategies' runs (with one strategy they count devices). ``failed`` includes
devices that did not finish before the timeout. Completion times are link seconds from the start of
publishing to the device running the new model, over the devices that applied it (null if none did, and
null when the run was CPU-bound). The event loop's lag is left out of link time; a run whose loop fell
behind more than ``loop_lag.max_share`` of the wall time (and at least ``loop_lag.min_link_s`` link
seconds) is CPU-bound and reports no times (simulator.fleet.loop_lag).

``bytes_per_device`` is the mean over the strategy's devices of each category of simulator.fleet.wire_bytes
each way, and the figures issue 20 sets targets for: bytes down less set-up and keepalives less the
release payload P (``payload_bytes``, its chunks' bytes), and bytes up less set-up and keepalives.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from simulator.fleet.loop_lag import MAX_LAG_SHARE
from simulator.fleet.results import FleetResult, StrategyResult
from simulator.fleet.wire_bytes import CATEGORIES

#: Issue 20's targets per device and release, set-up and keepalives left out: down at most P + 400 bytes, up 250.
TARGET_DOWN_OVER_PAYLOAD, TARGET_UP = 400, 250


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    position = (len(sorted_values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def completion(strategy: StrategyResult) -> dict[str, float | None]:
    """p50, p95 and max link seconds to the new model; None where there are none, or none that are link time."""
    times = strategy.completion_times()
    if not times or not strategy.times_valid:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(percentile(times, 0.5), 3), "p95": round(percentile(times, 0.95), 3),
            "max": round(times[-1], 3)}


def bytes_per_device(strategy: StrategyResult) -> dict:
    """The per-device mean of each category each way, and the figures the targets are about (module doc)."""
    count = max(1, len(strategy.devices))

    def mean(values) -> float:
        return round(sum(values) / count, 1)

    return {
        "payload_bytes": strategy.payload_bytes,
        "down": {c: mean(getattr(d.wire.down, c) for d in strategy.devices) for c in CATEGORIES},
        "up": {c: mean(getattr(d.wire.up, c) for d in strategy.devices) for c in CATEGORIES},
        "down_excluding_setup_minus_payload": round(mean(d.wire.down.beyond_setup for d in strategy.devices)
                                                    - strategy.payload_bytes, 1),
        "up_excluding_setup": mean(d.wire.up.beyond_setup for d in strategy.devices),
        "targets": {"down_excluding_setup_minus_payload": TARGET_DOWN_OVER_PAYLOAD, "up_excluding_setup": TARGET_UP},
    }


def report_dict(result: FleetResult) -> dict:
    strategies = [
        {
            "name": s.name, "update_bytes": s.update_bytes, "wire_bytes_down": s.wire_bytes_down,
            "wire_bytes_up": s.wire_bytes_up, "applied": s.applied, "completion_s": completion(s),
            "loop_lag": s.loop_lag.to_dict() if s.loop_lag else None, "bytes_per_device": bytes_per_device(s),
        }
        for s in result.strategies
    ]
    return {
        "devices": result.config.devices,
        "applied": sum(s.applied for s in result.strategies),
        "failed": sum(s.failed for s in result.strategies),
        "cpu_bound": not all(s.times_valid for s in result.strategies),
        "strategies": strategies,
    }


def cpu_bound_warning(result: FleetResult) -> str | None:
    """What to tell the user when a strategy's times are not link time, or None."""
    bound = [s for s in result.strategies if not s.times_valid]
    if not bound:
        return None
    worst = max(bound, key=lambda s: s.loop_lag.share).loop_lag
    config = result.config
    return (f"WARNING: the simulator could not keep up: its event loop fell behind {worst.total_s:.1f} s of "
            f"{worst.wall_s:.1f} s ({100 * worst.share:.0f}%, more than {100 * MAX_LAG_SHARE:.0f}%): too much to leave "
            "out of link time (what overlaps on real links ran one after another), so times are not reported "
            f"({', '.join(s.name for s in bound)}); lower "
            f"--time-scale (now {config.time_scale:g}) or --devices (now {config.devices}), or run on an idle machine")


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
    """A row per device and strategy: link, outcome, error code, completion, bytes, reconnects, losses, and the
    bytes of each category each way (down_CATEGORY..., up_CATEGORY...)."""
    columns = ("strategy", "device", "link", "outcome", "error", "completion_s", "bytes_down", "bytes_up",
               "reconnects", "lost_segments", "cuts", *(f"down_{c}" for c in CATEGORIES),
               *(f"up_{c}" for c in CATEGORIES))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for strategy in result.strategies:
            for d in strategy.devices:
                shown = d.completion_s is not None and strategy.times_valid  # a CPU-bound run reports no times
                writer.writerow((strategy.name, d.device_id, d.link, d.outcome, d.error or "",
                                 f"{d.completion_s:.3f}" if shown else "", d.bytes_down,
                                 d.bytes_up, d.reconnects, d.lost_segments, d.cuts,
                                 *(getattr(d.wire.down, c) for c in CATEGORIES),
                                 *(getattr(d.wire.up, c) for c in CATEGORIES)))


def link_counts(result: FleetResult) -> dict[str, int]:
    """Devices per link profile, in the order the mix gives them."""
    counts: dict[str, int] = {}
    for device in result.strategies[0].devices if result.strategies else ():
        counts[device.link] = counts.get(device.link, 0) + 1
    return counts


def plot_report(result: FleetResult, path: Path) -> None:
    """Completion-time CDF per strategy and link profile (left; none when the run was CPU-bound) and the
    bytes each strategy costs, labelled, with how many times fewer the factorised update sends (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cdf, bars) = plt.subplots(1, 2, figsize=(12, 4.8))
    devices, counts = result.config.devices, link_counts(result)
    mix = ", ".join(f"{count} on {name}" for name, count in counts.items())
    figure.suptitle(f"{devices} devices ({mix}); links run {result.config.time_scale:g}x faster than the wall "
                    "clock, times are link time", fontsize=10)
    _plot_cdf(cdf, result, counts)
    _plot_bytes(bars, result)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_cdf(axes, result: FleetResult, counts: dict[str, int]) -> None:
    styles = ("-", "--", ":", "-.")
    for number, strategy in enumerate(result.strategies):
        if not strategy.times_valid:
            continue
        colour = f"C{number}"
        for link_number, link in enumerate(counts):
            times = sorted(d.completion_s for d in strategy.devices if d.link == link and d.completion_s is not None)
            if times:
                fractions = [(i + 1) / counts[link] for i in range(len(times))]
                axes.step([0.0, *times], [0.0, *fractions], where="post", color=colour,
                          linestyle=styles[link_number % len(styles)],
                          label=f"{strategy.name} on {link} ({len(times)}/{counts[link]})")
    if any(not s.times_valid for s in result.strategies):
        axes.text(0.5, 0.5, "times not shown: the simulator was CPU-bound\n(see the warning in the report)",
                  ha="center", va="center", transform=axes.transAxes, color="C3")
    axes.set_xlabel("time to running the release (link seconds)")
    axes.set_ylabel("fraction of the devices on that link")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right", fontsize=8)
    axes.set_title("completion time, per strategy and link")


def _plot_bytes(axes, result: FleetResult) -> None:
    names = [s.name for s in result.strategies]
    per_device = max(1, result.config.devices)
    series = [("update payload", [s.update_bytes for s in result.strategies]),
              ("on the air, down, per device", [s.wire_bytes_down / per_device for s in result.strategies]),
              ("on the air, up, per device", [s.wire_bytes_up / per_device for s in result.strategies])]
    width = 0.27
    colours = ("#4d4d4d", "#2ca02c", "#9467bd")  # not the strategies' colours of the CDF beside it
    for offset, (label, values), colour in zip((-width, 0.0, width), series, colours, strict=True):
        drawn = axes.bar([i + offset for i in range(len(names))], values, width, label=label, color=colour)
        axes.bar_label(drawn, labels=[_bytes(v) for v in values], fontsize=7, padding=2)
    axes.set_xticks(list(range(len(names))), names)
    axes.set_ylabel("bytes (log scale)")
    axes.set_yscale("log")
    axes.set_ylim(top=max(max(v) for _, v in series) * 8)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8, loc="upper right")
    by_name = {s.name: s for s in result.strategies}
    title = "bytes per strategy"
    full, factorised = by_name.get("full"), by_name.get("factorised")
    if full and factorised and factorised.wire_bytes_down and factorised.update_bytes:
        title = (f"the factorised update is {full.update_bytes / factorised.update_bytes:,.0f}x smaller;\n"
                 f"{full.wire_bytes_down / factorised.wire_bytes_down:,.1f}x fewer bytes down per device "
                 "(MQTT, TCP and manifest included)")
    axes.set_title(title, fontsize=10)


def _bytes(value: float) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


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
    lines.append(f"links: {', '.join(f'{n} x{c}' for n, c in link_counts(result).items())}; time scale "
                 f"{result.config.time_scale:g} (times are link time)")
    failures = {}
    for s in result.strategies:
        for d in s.devices:
            if d.outcome != "applied":
                failures[(s.name, d.error or d.outcome)] = failures.get((s.name, d.error or d.outcome), 0) + 1
    for (name, why), count in sorted(failures.items()):
        lines.append(f"{name}: {count} device(s) did not apply: {why}")
    lines += ["", wire_table(result)]
    warning = cpu_bound_warning(result)
    if warning:
        lines.append(warning)
    return "\n".join(lines)


def wire_table(result: FleetResult) -> str:
    """Bytes per device by category each way (payload+framing), set-up and keepalives apart, against the targets."""
    header = (f"{'strategy':<11} {'':<4} {'manifest':>11} {'chunks':>15} {'status':>11} {'subscr':>7} {'acks':>5} "
              f"{'other':>6} | {'set-up':>7} {'keepal':>6} | {'net':>8} {'target':>6}")
    lines = ["bytes per device, mean, from publishing on; payload+framing (framing includes the acks of each flow)",
             header, "-" * len(header)]
    for s in result.strategies:
        means = bytes_per_device(s)
        figures = {"down": (f"P{means['down_excluding_setup_minus_payload']:+,.0f}", f"P+{TARGET_DOWN_OVER_PAYLOAD}"),
                   "up": (f"{means['up_excluding_setup']:,.0f}", f"{TARGET_UP}")}
        for way, (figure, target) in figures.items():
            m = means[way]
            lines.append(f"{s.name if way == 'down' else '':<11} {way:<4} {_pair(m, 'manifest'):>11} "
                         f"{_pair(m, 'chunk'):>15} {_pair(m, 'status'):>11} {m['subscriptions']:>7,.0f} "
                         f"{m['acks']:>5,.0f} {m['other']:>6,.0f} | {m['setup']:>7,.0f} {m['keepalive']:>6,.0f} | "
                         f"{figure:>8} {target:>6}")
        lines.append(f"{'':<11} P = {s.payload_bytes:,} B (the release's chunk bytes)")
    lines.append("net: all but set-up (CONNECT/CONNACK, DISCONNECT, standing subscriptions, trust roots) and "
                 "keepalives;\napplication bytes, no TCP/IP headers (docs/simulator.md, \"Bytes on the air\")")
    return "\n".join(lines)


def _pair(means: dict[str, float], flow: str) -> str:
    return f"{means[f'{flow}_payload']:,.0f}+{means[f'{flow}_framing']:,.0f}"
