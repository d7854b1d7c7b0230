"""Power loss: SIGKILL a real device process (`rankcast device run`) at random moments (seeded) while it
downloads a release and while it applies one; every time the model file on disk must be exactly the old
or exactly the new one (sha256), state.json must agree with it after the store's crash recovery, and the
restarted device must finish the release (the new version with the target sha256).

Download: a full release of a 512 KB RCW model in 1 KB chunks through a relay throttled to 256 KB/s; the
kill comes once the spool holds a random number of chunks. Apply: a delta release of a 64 MB model (16 MB
in the quick run), so staging the copy, applying, hashing and the fsynced swap take a noticeable time; the
kill comes a random fraction of a measured apply time after the device reports "applying".
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from simulator.selftest.case import Case, Outcome
from simulator.selftest.harness import (
    Relay,
    SelftestBroker,
    StatusWatcher,
    file_sha256,
    install_model,
    installed,
    make_delta_release,
    make_device_config,
    make_full_release,
    make_keypair,
    make_model,
    model_dir,
    publish_release,
    spooled,
    start_device_process,
    stop_process,
    store_state,
    wait_for,
)

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


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def _check_after_kill(config: Path, old: tuple[int, str], new: tuple[int, str], tally: Tally, label: str) -> bool:
    """The file on disk is exactly old or new, and state.json (after recovery) says which."""
    _, _, on_disk = store_state(config, MODEL)
    if on_disk == old[1]:
        tally.old_file += 1
        expected = old
    elif on_disk == new[1]:
        tally.new_file += 1
        expected = new
    else:
        tally.failures.append(f"{label}: the model file is neither old nor new (sha256 {on_disk})")
        return False
    recovered = installed(config, MODEL)
    if recovered != expected:
        tally.failures.append(f"{label}: state.json says {recovered}, the file is version {expected[0]}")
        return False
    return True


def _wait_finished(watcher: StatusWatcher, device_id: str, version: int, after: int) -> None:
    watcher.wait(lambda s: s.get("state") == "idle" and s["models"].get(MODEL, {}).get("version") == version,
                 device_id, FINISH_S, f"release {version} committed", after=after)


def _restart_and_finish(config: Path, watcher: StatusWatcher, device_id: str, new: tuple[int, str],
                        tally: Tally, label: str) -> subprocess.Popen:
    mark = watcher.seen
    process = start_device_process(config)
    try:
        _wait_finished(watcher, device_id, new[0], mark)
    except TimeoutError as exc:
        tally.failures.append(f"{label}: {exc}")
        return process
    version, sha, on_disk = store_state(config, MODEL)
    if (version, sha) == new and on_disk == new[1]:
        tally.finished += 1
    else:
        tally.failures.append(f"{label}: after the restart the device runs {version} with sha256 {on_disk}")
    return process


def _download(workdir: Path, quick: bool) -> Outcome:
    rng = random.Random(SEED)
    trials = 4 if quick else 25
    tally = Tally()
    started = time.monotonic()
    with SelftestBroker(workdir / "broker", devices=1) as broker, StatusWatcher(broker) as watcher, \
            Relay(broker.port, rate=256 * 1024) as relay:
        device_id = broker.device_ids[0]
        key, public = make_keypair(workdir / "keys")
        config = make_device_config(workdir / "device", broker, device_id, MODEL, public, url=relay.url(tls=True))
        shapes = {"w": (256, 512)}
        base = make_model(0, shapes)
        install_model(config, MODEL, base, 1)
        old = (1, file_sha256(model_dir(config) / MODEL / "model.rcw"))
        process = start_device_process(config)
        try:
            watcher.wait(lambda s: s.get("state") == "idle", device_id, 30, "the device online")
            for trial in range(trials):
                if tally.failures:  # the device's state is unknown now: stop rather than pile up timeouts
                    break
                label = f"download trial {trial}"
                version = trial + 2
                model_file = make_model(version, shapes)
                release = make_full_release(model_file, MODEL, version, key, chunk_size=1024)
                new = (version, release.manifest.target_sha256.hex())
                count = release.manifest.chunk_count
                target = rng.randint(1, count - 2)
                publish_release(broker, release)
                wait_for(lambda t=target: len(spooled(config, MODEL)) >= t, 60, f"{target} chunks spooled", 0.002)
                _kill(process)
                tally.kills += 1
                ok = _check_after_kill(config, old, new, tally, label)
                process = _restart_and_finish(config, watcher, device_id, new, tally, label)
                if ok and tally.finished == trial + 1:
                    tally.held += 1
                old = new
        finally:
            stop_process(process)
    wall = time.monotonic() - started
    return Outcome(
        "power-loss-download", tally.kills, tally.held,
        f"{tally.kills} kills mid-download, file old {tally.old_file}/new {tally.new_file}, "
        f"{tally.finished} finished after restart, {wall:.0f} s"
        + (f"; {tally.failures[0]}" if tally.failures else ""),
    )


def _apply(workdir: Path, quick: bool) -> Outcome:
    rng = random.Random(SEED + 1)
    trials = 4 if quick else 25
    side = 2048 if quick else 4096
    tally = Tally()
    started = time.monotonic()
    with SelftestBroker(workdir / "broker", devices=1) as broker, StatusWatcher(broker) as watcher:
        device_id = broker.device_ids[0]
        key, public = make_keypair(workdir / "keys")
        config = make_device_config(workdir / "device", broker, device_id, MODEL, public)
        install_model(config, MODEL, make_model(0, {"w": (side, side), "b": (side,)}), 1)
        running = model_dir(config) / MODEL / "model.rcw"
        old = (1, file_sha256(running))
        process = start_device_process(config)
        try:
            watcher.wait(lambda s: s.get("state") == "idle", device_id, 30, "the device online")
            # Calibration: one release applied without a kill gives the apply time the kills aim into.
            release, target = make_delta_release(running, 1, MODEL, 2, key)
            mark = watcher.seen
            publish_release(broker, release)
            watcher.wait(lambda s: s.get("state") == "applying", device_id, 60, "applying", mark)
            t0 = time.monotonic()
            _wait_finished(watcher, device_id, 2, mark)
            apply_s = time.monotonic() - t0
            old = (2, target)
            # A kill that lands after the apply ended still counts as a run (the same checks hold), but
            # the case goes on until ``trials`` kills landed inside the apply (at most twice as many).
            trial = 0
            while tally.kills - tally.late < trials and trial < 2 * trials and not tally.failures:
                label = f"apply trial {trial}"
                version = trial + 3
                release, target = make_delta_release(running, version, MODEL, version, key)
                new = (version, target)
                mark = watcher.seen
                publish_release(broker, release)
                watcher.wait(lambda s, v=version: s.get("state") == "applying"
                             and (s.get("progress") or {}).get("release") == v, device_id, 60, "applying", mark)
                time.sleep(rng.uniform(0.0, apply_s))
                _kill(process)
                tally.kills += 1
                # The spool is cleared only after the commit: without it the kill came after the apply ended.
                tally.late += not any((model_dir(config) / ".spool" / MODEL).glob("*/chunks"))
                ok = _check_after_kill(config, old, new, tally, label)
                process = _restart_and_finish(config, watcher, device_id, new, tally, label)
                if ok and tally.finished == trial + 1:
                    tally.held += 1
                old = new
                trial += 1
        finally:
            stop_process(process)
    wall = time.monotonic() - started
    return Outcome(
        "power-loss-apply", tally.kills, tally.held,
        f"{tally.kills} kills while applying a {side * side * 4 >> 20} MB model (apply {apply_s:.2f} s): "
        f"{tally.kills - tally.late} inside the apply, {tally.late} after it ended; file old {tally.old_file}/new "
        f"{tally.new_file}, "
        f"{tally.finished} finished after restart, {wall:.0f} s"
        + (f"; {tally.failures[0]}" if tally.failures else ""),
    )


CASES: list[Case] = [
    Case("power-loss-download", "reliability", _download),
    Case("power-loss-apply", "reliability", _apply),
]
