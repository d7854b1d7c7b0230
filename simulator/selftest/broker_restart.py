"""Broker restart mid-release: Mosquitto (persistence on, the project's configuration) is stopped with
SIGTERM while a device process downloads a release and started again on the same data directory and port.
The release must complete from the retained messages the broker restored, with the target sha256, and no
chunk the device had spooled before the restart may be delivered to it again.

The device reaches the broker's plain loopback listener through a relay that throttles the link (a full
release of 128 KB in 1 KB chunks takes about 2 s) and counts every PUBLISH it forwards per topic: a chunk
fetched twice shows as a count of 2 on its topic.
"""

from __future__ import annotations

import time
from pathlib import Path

from codec.topics import chunk_topic
from simulator.selftest.case import Case, Outcome
from simulator.selftest.harness import (
    Relay,
    SelftestBroker,
    StatusWatcher,
    install_model,
    make_device_config,
    make_full_release,
    make_keypair,
    make_model,
    publish_release,
    spooled,
    start_device_process,
    stop_process,
    store_state,
    wait_for,
)

MODEL = "brm"
RATE = 64 * 1024
FINISH_S = 90.0


def _run(workdir: Path, quick: bool) -> Outcome:
    runs = 1 if quick else 3
    held, spooled_before, refetched_held, refetched_other, failures = 0, 0, 0, 0, []
    started = time.monotonic()
    with SelftestBroker(workdir / "broker", devices=1) as broker, StatusWatcher(broker) as watcher, \
            Relay(broker.dev_port, rate=RATE, count_publishes=True) as relay:
        device_id = broker.device_ids[0]
        key, public = make_keypair(workdir / "keys")
        config = make_device_config(workdir / "device", broker, device_id, MODEL, public, url=relay.url())
        shapes = {"w": (128, 256)}
        install_model(config, MODEL, make_model(0, shapes), 1)
        process = start_device_process(config)
        try:
            watcher.wait(lambda s: s.get("state") == "idle", device_id, 30, "the device online")
            for run in range(runs):
                version = run + 2
                release = make_full_release(make_model(version, shapes), MODEL, version, key, chunk_size=1024)
                count, target = release.manifest.chunk_count, release.manifest.target_sha256.hex()
                publish_release(broker, release)
                wait_for(lambda c=count: len(spooled(config, MODEL)) >= c // 3, 60, "a third of the chunks", 0.005)
                broker.stop()
                before = spooled(config, MODEL)  # the broker is gone: nothing more arrives until it is back
                broker.start()
                mark = watcher.seen
                try:
                    watcher.wait(lambda s, v=version: s.get("state") == "idle"
                                 and s["models"].get(MODEL, {}).get("version") == v,
                                 device_id, FINISH_S, f"release {version} committed", after=mark)
                except TimeoutError as exc:
                    failures.append(str(exc))
                    continue
                counts = [relay.published.get(chunk_topic(MODEL, version, i), 0) for i in range(count)]
                again = [i for i in before if counts[i] != 1]
                spooled_before += len(before)
                refetched_held += len(again)
                refetched_other += sum(c > 1 for i, c in enumerate(counts) if i not in before)
                state_version, state_sha, on_disk = store_state(config, MODEL)
                complete = len(before) < count and (state_version, state_sha, on_disk) == (version, target, target)
                if complete and not again:
                    held += 1
                else:
                    failures.append(f"release {version}: spooled {len(before)}/{count} before the restart, "
                                    f"fetched again {again[:5]}, running {state_version} sha256 {on_disk}")
        finally:
            stop_process(process)
    return Outcome(
        "broker-restart", runs, held,
        f"{runs} restarts mid-download, {held} releases completed; {spooled_before} chunks spooled before the "
        f"restarts, {refetched_held} of them fetched again ({refetched_other} in-flight chunks resent); "
        f"{time.monotonic() - started:.0f} s" + (f"; {failures[0]}" if failures else ""),
    )


CASES: list[Case] = [Case("broker-restart", "reliability", _run)]
