"""`rankcast simulate --catchup`: a fleet spread over versions 1..N by staged rollouts and offline periods
receives version N+1, each device by its own cheapest path (a chain of deltas, or the full file).

Real parts throughout: a testbed Mosquitto, real device clients (threads of this process), releases
published by publisher.release.publish.publish_with_index with their full fallbacks. The model is an RCW
file of random weights and each version a rank-4 delta of the one before (no training: the bytes, not the
accuracy, are measured here). History: every device starts on version 1, plus one device flashed with a
file no release starts from; version 2 goes to 50% of the fleet; the first quarter of the devices go
offline; version 3 goes to everyone online; the second quarter go offline; version 4 goes to 50%; then
every device comes back and the last version goes to everyone. Measured per device for that last
release: its path, the chunk bytes it fetched, against the full release it would otherwise fetch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from codec.apply import apply_to_bytes
from codec.manifest import signed_digest
from codec.release import Release
from device_client.catchup import plan_path
from publisher.release.build import full_release, update_release
from publisher.release.publish import publish_with_index
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceHome, DeviceThread
from simulator.testbed.synthetic import DAY, make_keypair, random_model_file, random_update
from simulator.testbed.waits import wait_for

MODEL = "catchup"
SHAPES = {"fc1.weight": (384, 256), "fc1.bias": (384,), "fc2.weight": (10, 384)}
CHUNK_SIZE = 1024
WAIT_S = 120.0


@dataclass(frozen=True)
class DeviceOutcome:
    """One device and the last release: where it started, the path it took, what it fetched."""

    device_id: str
    start_version: int
    path: list[str]
    fetched_bytes: int
    path_bytes: int
    final_version: int
    exact: bool


@dataclass(frozen=True)
class CatchupReport:
    devices: list[DeviceOutcome]
    full_bytes: int
    egress_bytes: int

    @property
    def everyone_full_bytes(self) -> int:
        return self.full_bytes * len(self.devices)

    def table(self) -> str:
        lines = [f"{'device':<12} {'from':>4} {'path':<32} {'fetched B':>10} {'full B':>8}",
                 "-" * 70]
        lines += [f"{d.device_id:<12} {d.start_version:>4} {' '.join(d.path):<32} {d.fetched_bytes:>10,} "
                  f"{self.full_bytes:>8,}" for d in self.devices]
        lines.append(f"broker egress {self.egress_bytes:,} B (chunks to devices) against "
                     f"{self.everyone_full_bytes:,} B for a full release to everyone "
                     f"({self.egress_bytes / self.everyone_full_bytes:.1%})")
        return "\n".join(lines)


def run_catchup(workdir: Path, devices: int = 12, last: int = 5, say: Callable[[str], None] = print) -> CatchupReport:
    """Run the history above on ``devices`` devices (at least 4) plus a stranger, then release ``last``."""
    key, public = make_keypair(workdir / "keys")
    files = [random_model_file(0, SHAPES)]
    ids = [f"device-{i:03d}" for i in range(devices + 1)]
    with Broker(workdir / "broker", devices=ids) as broker:
        homes = {i: DeviceHome.create(workdir / i, broker, i, MODEL, public) for i in ids}
        for device_id, home in homes.items():  # the last one, the stranger, runs a file no release starts from
            home.install(MODEL, files[0] if device_id != ids[-1] else random_model_file(1, SHAPES), 1)
        online = {i: DeviceThread(homes[i]) for i in ids[:-1]}  # the stranger joins for the last release
        quarter = devices // 4
        plan = {2: (50.0, []), 3: (100.0, ids[:quarter]), 4: (50.0, ids[quarter:2 * quarter])}
        for version, (rollout, offline) in plan.items():
            for device_id in offline:
                online.pop(device_id).stop()
            latest, _ = _release(broker, key, files, version, rollout)
            say(f"version {version} published to {rollout:g}% ({len(online)} devices online)")
            cohort = [t for i, t in online.items() if latest.manifest.in_rollout(i)]
            wait_for(lambda v=version, c=cohort: all(t.version(MODEL) == v for t in c),
                     f"the cohort of version {version}", WAIT_S)
        for device_id in ids[:-1]:
            if device_id not in online:
                online[device_id] = DeviceThread(homes[device_id])
        wait_for(lambda: all(_settled(t, latest) for t in online.values()), "the returning devices settled", WAIT_S)
        starts = {i: homes[i].installed(MODEL)[0] for i in ids}
        start_files = {i: homes[i].model_file(MODEL) for i in ids}
        latest, fallback = _release(broker, key, files, last, 100.0)
        online[ids[-1]] = DeviceThread(homes[ids[-1]])
        say(f"version {last} published to everyone ({len(online)} devices)")
        wait_for(lambda: all(t.version(MODEL) == last for t in online.values()), f"every device on {last}", WAIT_S)
        outcomes = []
        for device_id in ids:
            thread = online[device_id]
            steps = plan_path(latest.manifest, hashlib.sha256(start_files[device_id]).digest(), starts[device_id])
            fetched = thread.device.updaters[MODEL].fetched_bytes  # counted from its download of the last release
            outcomes.append(DeviceOutcome(
                device_id, starts[device_id], [f"{s.version}{'f' if s.kind == 'full' else ''}" for s in steps],
                fetched, sum(s.payload_length for s in steps), thread.version(MODEL),
                thread.home.model_file(MODEL) == files[-1]))
        for thread in online.values():
            thread.stop(wait=False)
        for thread in online.values():
            thread.stop()
    full_bytes = fallback.manifest.payload_length
    return CatchupReport(outcomes, full_bytes, sum(o.fetched_bytes for o in outcomes))


def _release(broker: Broker, key, files: list[bytes], version: int, rollout: float) -> tuple[Release, Release]:
    """Publish ``version``: a delta of the last file with its full fallback and catch-up index."""
    update = random_update(files[-1], version)
    files.append(apply_to_bytes(files[-1], update.payload, update.decompressed_length)[0])
    options = dict(model=MODEL, version=version, key=key, chunk_size=CHUNK_SIZE, rollout_percent=rollout,
                   lifetime_s=DAY)
    fallback = full_release(files[-1], **options)
    with broker.publisher() as session:
        release = publish_with_index(session, lambda index: update_release(update, index=index, **options),
                                     model=MODEL, version=version, prefix=broker.prefix, key=key.verify_key,
                                     fallback=fallback,
                                     new_model=version == 2)
    return release, fallback


def _settled(thread: DeviceThread, latest: Release) -> bool:
    """Whether the device has handled ``latest``'s manifest, has nothing in progress and, in its rollout, runs it.

    The device's thread records the manifest's digest before it plans the download, so digest and no
    download alone read as settled in between: the harness then took the old version as the start of a
    device about to download ``latest``, and its path came out a step longer than what it fetched."""
    updater = thread.device.updaters[MODEL]
    if updater.latest_digest != signed_digest(latest.envelope) or updater.download is not None:
        return False
    installed = updater.installed
    return not latest.manifest.in_rollout(thread.device.device_id) or (
        installed is not None and installed.sha256 == latest.manifest.target_sha256)


def write_report(report: CatchupReport, out: Path) -> Path:
    """OUT/catchup.json: every device's outcome and the totals."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "catchup.json"
    path.write_text(json.dumps({"devices": [asdict(d) for d in report.devices], "full_bytes": report.full_bytes,
                                "egress_bytes": report.egress_bytes,
                                "everyone_full_bytes": report.everyone_full_bytes}, indent=2) + "\n")
    return path
