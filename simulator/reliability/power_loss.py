"""Power loss: SIGKILL a real device process (`rankcast device run`) at random moments (seeded) while it
downloads a release and while it applies one; every time the model file on disk must be exactly the old
or exactly the new one (sha256), state.json must agree with it after the store's crash recovery, and the
restarted device must finish the release (the new version with the target sha256).

Download: a full release of a 512 KB RCW model in 1 KB chunks through a link throttled to 256 KB/s; the
kill comes once the spool holds a random number of chunks. Apply: a delta release of a 64 MB model (16 MB
in the quick run), so staging the copy, applying, hashing and the fsynced swap take a noticeable time; the
kill comes a random fraction of a measured apply time after the device reports "applying".
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from simulator.fleet.link_thread import ThreadedLink, throttled
from simulator.reliability.case import Case, Outcome
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceHome, DeviceProcess
from simulator.testbed.probe import MqttProbe, broker_probe
from simulator.testbed.synthetic import make_delta_release, make_full_release, random_model_file
from simulator.testbed.waits import wait_for
from simulator.testbed.watched import watched_device

MODEL = "plm"
SEED = 20240607
FINISH_S = 120.0


@dataclass
class Tally:
    kills: int = 0
    held: int = 0
    finished: int = 0
    old_file: int = 0
    new_file: int = 0
    late: int = 0
    failures: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, int]:
        return {"kills": self.kills, "finished": self.finished, "old_file": self.old_file, "new_file": self.new_file,
                "late": self.late}


def _check_after_kill(home: DeviceHome, old: tuple[int, str], new: tuple[int, str], tally: Tally, label: str) -> bool:
    """The file on disk is exactly old or new, and state.json (after recovery) says which."""
    _, _, on_disk = home.state(MODEL)
    if on_disk == old[1]:
        tally.old_file += 1
        expected = old
    elif on_disk == new[1]:
        tally.new_file += 1
        expected = new
    else:
        tally.failures.append(f"{label}: the model file is neither old nor new (sha256 {on_disk})")
        return False
    recovered = home.installed(MODEL)
    if recovered != expected:
        tally.failures.append(f"{label}: state.json says {recovered}, the file is version {expected[0]}")
        return False
    return True


def _wait_finished(probe: MqttProbe, device_id: str, version: int, after: int) -> None:
    probe.wait_status(device_id, lambda s: s.get("state") == "idle" and s["models"].get(MODEL, {}).get("version")
                      == version, f"release {version} committed", FINISH_S, after=after)


def _restart_and_finish(home: DeviceHome, probe: MqttProbe, device_id: str, new: tuple[int, str], tally: Tally,
                        label: str) -> DeviceProcess:
    mark = probe.seen
    device = DeviceProcess(home)
    try:
        _wait_finished(probe, device_id, new[0], mark)
    except TimeoutError as exc:
        tally.failures.append(f"{label}: {exc}")
        return device
    version, sha, on_disk = home.state(MODEL)
    if (version, sha) == new and on_disk == new[1]:
        tally.finished += 1
    else:
        tally.failures.append(f"{label}: after the restart the device runs {version} with sha256 {on_disk}")
    return device


def _download(workdir: Path, quick: bool) -> Outcome:
    rng = random.Random(SEED)
    trials = 4 if quick else 25
    tally = Tally()
    started = time.monotonic()
    with Broker(workdir / "broker") as broker, ThreadedLink(broker.port, throttled(256 * 1024)) as link, \
            broker_probe(broker) as probe:
        shapes = {"w": (256, 512)}
        watched = watched_device(workdir, broker, probe, MODEL, random_model_file(0, shapes), url=link.url(tls=True))
        device_id, key, home = watched.device_id, watched.key, watched.home
        old = (1, home.state(MODEL)[2])
        device = DeviceProcess(home)
        try:
            probe.wait_status(device_id, lambda s: s.get("state") == "idle", "the device online", 30)
            for trial in range(trials):
                if tally.failures:  # the device's state is unknown now: stop rather than pile up timeouts
                    break
                label = f"download trial {trial}"
                version = trial + 2
                release = make_full_release(random_model_file(version, shapes), MODEL, version, key, chunk_size=1024)
                new = (version, release.manifest.target_sha256.hex())
                target = rng.randint(1, release.manifest.chunk_count - 2)
                broker.publish(release)
                wait_for(lambda t=target: len(home.spooled(MODEL)) >= t, f"{target} chunks spooled", 60, 0.002)
                device.kill()
                tally.kills += 1
                ok = _check_after_kill(home, old, new, tally, label)
                device = _restart_and_finish(home, probe, device_id, new, tally, label)
                if ok and tally.finished == trial + 1:
                    tally.held += 1
                old = new
        finally:
            device.stop()
    detail = (f"{tally.kills} kills mid-download, file old {tally.old_file}/new {tally.new_file}, "
              f"{tally.finished} finished after restart, {time.monotonic() - started:.0f} s")
    return Outcome("power-loss-download", tally.kills, tally.held, detail, tally.facts(), tuple(tally.failures))


def _apply(workdir: Path, quick: bool) -> Outcome:
    rng = random.Random(SEED + 1)
    trials = 4 if quick else 25
    side = 2048 if quick else 4096
    tally = Tally()
    started = time.monotonic()
    with Broker(workdir / "broker") as broker, broker_probe(broker) as probe:
        watched = watched_device(workdir, broker, probe, MODEL, random_model_file(0, {"w": (side, side), "b": (side,)}))
        device_id, key, home = watched.device_id, watched.key, watched.home
        device = DeviceProcess(home)
        try:
            probe.wait_status(device_id, lambda s: s.get("state") == "idle", "the device online", 30)
            # Calibration: one release applied without a kill gives the apply time the kills aim into.
            release, _ = make_delta_release(home.model_file(MODEL), 1, MODEL, 2, key)
            mark = probe.seen
            broker.publish(release)
            probe.wait_status(device_id, lambda s: s.get("state") == "applying", "applying", 60, after=mark)
            t0 = time.monotonic()
            _wait_finished(probe, device_id, 2, mark)
            apply_s = time.monotonic() - t0
            old = (2, release.manifest.target_sha256.hex())
            # A kill that lands after the apply ended still counts as a run (the same checks hold), but
            # the case goes on until ``trials`` kills landed inside the apply (at most twice as many).
            trial = 0
            while tally.kills - tally.late < trials and trial < 2 * trials and not tally.failures:
                label = f"apply trial {trial}"
                version = trial + 3
                release, _ = make_delta_release(home.model_file(MODEL), version, MODEL, version, key)
                new = (version, release.manifest.target_sha256.hex())
                mark = probe.seen
                broker.publish(release)
                probe.wait_status(device_id, lambda s, v=version: s.get("state") == "applying"
                                  and (s.get("progress") or {}).get("release") == v, "applying", 60, after=mark)
                time.sleep(rng.uniform(0.0, apply_s))
                device.kill()
                tally.kills += 1
                # The spool is cleared only after the commit: without it the kill came after the apply ended.
                tally.late += not any((home.model_dir / ".spool" / MODEL).glob("*/chunks"))
                ok = _check_after_kill(home, old, new, tally, label)
                device = _restart_and_finish(home, probe, device_id, new, tally, label)
                if ok and tally.finished == trial + 1:
                    tally.held += 1
                old = new
                trial += 1
        finally:
            device.stop()
    detail = (f"{tally.kills} kills while applying a {side * side * 4 >> 20} MB model (apply {apply_s:.2f} s): "
              f"{tally.kills - tally.late} inside the apply, {tally.late} after it ended; file old {tally.old_file}/"
              f"new {tally.new_file}, {tally.finished} finished after restart, {time.monotonic() - started:.0f} s")
    facts = {**tally.facts(), "model_mib": side * side * 4 >> 20, "apply_s": round(apply_s, 2)}
    return Outcome("power-loss-apply", tally.kills, tally.held, detail, facts, tuple(tally.failures))


CASES: list[Case] = [
    Case("power-loss-download", "reliability", _download),
    Case("power-loss-apply", "reliability", _apply),
]
