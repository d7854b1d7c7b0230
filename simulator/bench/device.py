"""`rankcast bench device`: what a release costs a real device process in memory and disk, by model size.

For each model size a fresh device process (`rankcast device run`, the testbed's) runs an RCW model of
that many MiB of random float32 weights (tensors of at most 16 MiB each, as in a real network) and takes
two releases through a testbed broker: a full release of a new model file, then a rank-4 delta. While
it does, the device's resident memory (VmRSS, and VmHWM, its peak) and the bytes in its model directory
(running file, previous file, staged copy, spool) are sampled every few milliseconds. Reported per release:
peak RSS above the idle process, peak disk (all of it, and without the kept previous file: what the
release itself needs, since the previous file is given up only on a disk too small for both), and the
model and payload sizes they compare with.

Writes DIR/device.json and prints a table.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from codec.weights import encode_weights
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceProcess
from simulator.testbed.probe import MqttProbe, broker_probe
from simulator.testbed.synthetic import make_delta_release, make_full_release
from simulator.testbed.watched import watched_device

MODEL = "big"
TENSOR_MIB = 16
WAIT_S = 600.0


@dataclass(frozen=True)
class DeviceCost:
    """One release on one model size."""

    model_mib: float
    release: str
    payload_mib: float
    seconds: float
    peak_extra_rss_mib: float
    peak_disk_mib: float
    peak_disk_without_previous_mib: float


def model_file(mib: int, seed: int) -> bytes:
    """An RCW file of about ``mib`` MiB: float32 tensors of at most TENSOR_MIB MiB each, random values."""
    rng = np.random.default_rng(seed)
    columns = 1024
    rows_left, per_tensor = mib * 2**20 // (4 * columns), TENSOR_MIB * 2**20 // (4 * columns)
    tensors = {}
    while rows_left > 0:
        rows = min(rows_left, per_tensor)
        tensors[f"layer{len(tensors)}.weight"] = rng.standard_normal((rows, columns), dtype=np.float32)
        rows_left -= rows
    return encode_weights(tensors)


class _Sampler:
    """Samples a process's RSS and a folder's bytes on a thread until stopped; keeps the peaks. The
    process's own peak (VmHWM) is reset first where Linux allows it, so it counts this release only."""

    def __init__(self, device: DeviceProcess, folder: Path) -> None:
        self.device, self.folder = device, folder
        try:
            Path(f"/proc/{device.process.pid}/clear_refs").write_text("5")
        except OSError:
            pass  # without it VmHWM is the peak since start, and the samples alone count
        self.peak_rss = self.peak_disk = self.peak_without_previous = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.device.memory_mib("VmRSS"))
            total, previous = _folder_mib(self.folder)
            self.peak_disk = max(self.peak_disk, total)
            self.peak_without_previous = max(self.peak_without_previous, total - previous)
            time.sleep(0.005)

    def stop(self) -> tuple[float, float, float]:
        """Peak RSS, peak disk, peak disk without the kept previous file (MiB)."""
        self._stop.set()
        self._thread.join()
        return max(self.peak_rss, self.device.memory_mib("VmHWM")), self.peak_disk, self.peak_without_previous


def _folder_mib(folder: Path) -> tuple[float, float]:
    """MiB on disk under ``folder``: all files, and the kept previous files among them."""
    total = previous = 0
    for path in folder.rglob("*"):
        try:
            size = path.stat().st_blocks * 512 if path.is_file() else 0
        except OSError:
            continue  # gone between listing and stat: a file being swapped
        total += size
        previous += size if path.stem == "previous" else 0
    return total / 2**20, previous / 2**20


def _release(probe: MqttProbe, device_id: str, broker: Broker, release, version: int) -> None:
    mark = probe.seen
    broker.publish(release)
    probe.wait_status(device_id, lambda s: s.get("state") == "idle" and s["models"][MODEL]["version"] == version,
                      f"release {version} applied", WAIT_S, after=mark)


def measure(mib: int, workdir: Path) -> list[DeviceCost]:
    """The full and the delta release on a model of ``mib`` MiB."""
    base = model_file(mib, seed=0)
    costs = []
    with Broker(workdir / "broker") as broker, broker_probe(broker) as probe:
        watched = watched_device(workdir, broker, probe, MODEL, base)
        with DeviceProcess(watched.home) as device:
            probe.wait_status(watched.device_id, lambda s: s.get("state") == "idle", "the device online", 60)
            time.sleep(0.5)
            idle = device.memory_mib("VmRSS")
            new_model = model_file(mib, seed=1)
            full = make_full_release(new_model, MODEL, 2, watched.key, chunk_size=128 * 1024)
            delta, _ = make_delta_release(new_model, 3, MODEL, 3, watched.key, chunk_size=128 * 1024)
            for version, (name, release) in enumerate((("full", full), ("delta", delta)), 2):
                started, sampler = time.monotonic(), _Sampler(device, watched.home.model_dir)
                _release(probe, watched.device_id, broker, release, version)
                peak_rss, peak_disk, without_previous = sampler.stop()
                costs.append(DeviceCost(round(len(base) / 2**20, 1), name,
                                        round(release.manifest.payload_length / 2**20, 2),
                                        round(time.monotonic() - started, 1), round(peak_rss - idle, 1),
                                        round(peak_disk, 1), round(without_previous, 1)))
    return costs


def format_table(costs: list[DeviceCost]) -> str:
    header = (f"{'model MiB':>9} {'release':<7} {'payload MiB':>11} {'time s':>7} {'peak extra RSS MiB':>18} "
              f"{'peak disk MiB':>13} {'without previous':>16}")
    lines = [header, "-" * len(header)]
    lines += [f"{c.model_mib:>9.1f} {c.release:<7} {c.payload_mib:>11.2f} {c.seconds:>7.1f} "
              f"{c.peak_extra_rss_mib:>18.1f} {c.peak_disk_mib:>13.1f} {c.peak_disk_without_previous_mib:>16.1f}"
              for c in costs]
    return "\n".join(lines)


def run_device_bench(sizes: list[int], out: Path) -> int:
    """Measure every size, print the table, write OUT/device.json; returns 0."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    costs: list[DeviceCost] = []
    for mib in sizes:
        print(f"device: a {mib} MiB model ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="rankcast-device-bench-") as workdir:
            costs += measure(mib, Path(workdir))
    print(format_table(costs))
    (out / "device.json").write_text(json.dumps({"costs": [asdict(c) for c in costs]}, indent=2) + "\n")
    print(f"wrote {out / 'device.json'}", file=sys.stderr)
    return 0
