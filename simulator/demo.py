"""`rankcast demo`: a retrained model reaches a simulated fleet on NB-IoT and LTE-M, as the product does it.

1. Train a digits MLP in PyTorch and export it to TFLite: the model the fleet runs.
2. Concept drift: train a factorised update (W frozen, small quantised factors) on drifted digits.
3. Roll the update out to simulated devices, each a real device client behind its own emulated link,
   through a real Mosquitto, and compare with sending the whole model.
4. Measure accuracy on the devices' own TFLite files, before and after.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.describe import describe_payload
from codec.model_files import model_suffix, slot_reader_for
from codec.update_file import read_update_file
from device_client.store import FileModelStore
from device_client.tflite_runtime import TFLiteModel
from simulator.bench.scenarios import scenario
from simulator.bench.trained import build_scenario_update
from simulator.fleet.config import FleetConfig
from simulator.fleet.inputs import load_update
from simulator.fleet.links import BUILTIN, parse_link_mix
from simulator.fleet.progress import ProgressBar
from simulator.fleet.report import report_table, write_report
from simulator.fleet.results import FleetResult, StrategyResult
from simulator.fleet.runner import run_fleet


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs; the defaults finish in about two minutes on two cores."""

    devices: int = 50
    links: str = "nbiot:0.5,ltem"
    time_scale: float = 2.0
    scenario: str = "drift"
    rank: int = 8
    epochs: int = 30


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _device_accuracies(result: StrategyResult, base: bytes, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Accuracy of every device's own model file, run with the device's TFLite runtime."""
    accuracies = []
    for device in result.devices:
        store = FileModelStore(result.devices_dir / device.device_id / "models", model_suffix(base),
                               slot_reader_for(base))
        predictions = TFLiteModel(store.model_path(result.model)).predict(x).argmax(axis=1)
        accuracies.append(float((predictions == y).mean()))
    return accuracies


def _tflite_accuracy(model_file: Path, x: np.ndarray, y: np.ndarray) -> float:
    return float((TFLiteModel(model_file).predict(x).argmax(axis=1) == y).mean())


def _summary(fleet: FleetResult, accuracy_before: float, accuracies: dict[str, list[float]]) -> str:
    rows = [f"  {'':28}" + "".join(f"{s.name:>16}" for s in fleet.strategies)]

    def row(label: str, cell) -> None:
        rows.append(f"  {label:28}" + "".join(f"{cell(s):>16}" for s in fleet.strategies))

    row("update bytes", lambda s: f"{s.update_bytes:,}")
    row("bytes on the air per device", lambda s: f"{s.wire_bytes_down // max(1, len(s.devices)):,}")
    row("devices running it", lambda s: f"{s.applied}/{len(s.devices)}")
    def timed(s, value) -> str:
        if not s.times_valid:
            return "CPU-bound"  # the warning under the fleet table says why no time is given
        return f"{value(s.completion_times()):.1f} s" if s.completion_times() else "-"

    for label, q in (("time to new model, median", 50), ("time to new model, p95", 95)):
        row(label, lambda s, q=q: timed(s, lambda times: np.percentile(times, q)))
    row("fleet done (last device)", lambda s: timed(s, max))
    row("device accuracy before", lambda s: _percent(accuracy_before))
    row("device accuracy after", lambda s: f"{_percent(min(accuracies[s.name]))}"
        if accuracies[s.name] else "-")
    return "\n".join(rows)


def run_demo(out: Path, config: DemoConfig = DemoConfig()) -> int:
    """Run the demo, writing models, the fleet report and plots under ``out``; 0 if every device updated."""
    started = time.monotonic()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    mix = parse_link_mix(config.links, dict(BUILTIN))
    print(f"rankcast demo: a retrained model to {config.devices} devices on {config.links} "
          f"(links run {config.time_scale:g}x faster; times below are link time)")

    _step("1. The deployed model: a 64-256-256-10 MLP trained on clean digits (PyTorch), exported to TFLite")
    _step("2. Concept drift: devices now see shifted, noisy, low-contrast digits; train a factorised update")
    print(f"   W stays frozen; each layer becomes W + U·V at rank {config.rank}: the larger factor is signs the device "
          "regenerates from a seed, the smaller is trained and sent as ternary codes", flush=True)
    base_file, update_file, target_file = build_scenario_update(
        config.scenario, out / "models", epochs=config.epochs, rank=config.rank, tflite=True)
    update = read_update_file(update_file)
    print(describe_payload(update.payload, update.decompressed_length))
    test = scenario(config.scenario).test
    x, y = test.x.numpy(), test.y.numpy()
    before = _tflite_accuracy(base_file, x, y)
    print(f"   server, PyTorch, drifted held-out digits: {_percent(update.info['base_accuracy'])} before, "
          f"{_percent(update.info['accuracy'])} after (the exact model devices will rebuild)")
    print(f"   TFLite base model on the same digits: {_percent(before)}")

    _step(f"3. Roll out to {config.devices} simulated devices: the full model, then the factorised update")
    inputs = load_update(base_file, update_file)
    fleet_config = FleetConfig(devices=config.devices, links=mix, time_scale=config.time_scale,
                               timeout_s=1800.0, keep_devices=True)
    bar = ProgressBar(config.devices, enabled=True)
    try:
        fleet = run_fleet(fleet_config, inputs, out / "fleet", progress=bar.update)
    finally:
        bar.close()
    write_report(fleet, out)
    print(report_table(fleet))

    _step("4. What the devices run: each device's own .tflite, checked and measured")
    target_sha = hashlib.sha256(target_file.read_bytes()).hexdigest()
    accuracies = {}
    try:
        for strategy in fleet.strategies:
            accuracies[strategy.name] = _device_accuracies(strategy, inputs.base, x, y)
    finally:
        for strategy in fleet.strategies:
            if strategy.devices_dir is not None:
                shutil.rmtree(strategy.devices_dir.parent, ignore_errors=True)
    print(f"   every updated device verified its file against the signed target sha256 {target_sha[:16]}…")
    for name, values in accuracies.items():
        print(f"   {name:11} accuracy on drifted held-out digits across {len(values)} devices: "
              f"min {_percent(min(values))}, max {_percent(max(values))}")

    _step("Summary")
    print(_summary(fleet, before, accuracies))
    full, factorised = fleet.strategies[0], fleet.strategies[1]
    print(f"\n   the factorised update is {full.update_bytes / factorised.update_bytes:.0f}x smaller than the model")
    print(f"   report: {out / 'report.json'}, plot: {out / 'report.png'}  ({time.monotonic() - started:.0f} s wall)")
    return 0 if all(s.applied == len(s.devices) for s in fleet.strategies) else 2
