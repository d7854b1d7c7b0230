"""Broker restart mid-release: Mosquitto (persistence on, the project's configuration) is stopped with
SIGTERM while a device process downloads a release and started again on the same data directory and port.
The release must complete from the retained messages the broker restored, with the target sha256, and no
chunk the device had spooled before the restart may be delivered to it again.

The device reaches the broker's plain loopback listener through a link that throttles it (a full
release of 128 KB in 1 KB chunks takes about 2 s) and counts every PUBLISH it delivers per topic: a chunk
fetched twice shows as a count of 2 on its topic.
"""

from __future__ import annotations

import time
from pathlib import Path

from codec.topics import chunk_topic
from simulator.fleet.link_thread import ThreadedLink, throttled
from simulator.fleet.publish_counter import PublishCounter
from simulator.reliability.case import Case, Outcome
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceProcess
from simulator.testbed.probe import broker_probe
from simulator.testbed.synthetic import make_full_release, random_model_file
from simulator.testbed.waits import wait_for
from simulator.testbed.watched import watched_device

MODEL = "brm"
RATE = 64 * 1024
FINISH_S = 90.0
SHAPES = {"w": (128, 256)}


def _run(workdir: Path, quick: bool) -> Outcome:
    runs = 1 if quick else 3
    held, spooled_before, refetched_held, refetched_other, failures = 0, 0, 0, 0, []
    started = time.monotonic()
    counter = PublishCounter()
    with Broker(workdir / "broker") as broker, \
            ThreadedLink(broker.dev_port, throttled(RATE), down_tap=counter.stream) as link, \
            broker_probe(broker) as probe:
        watched = watched_device(workdir, broker, probe, MODEL, random_model_file(0, SHAPES), url=link.url())
        device_id, key, home = watched.device_id, watched.key, watched.home
        pids = [broker.process.pid]
        with DeviceProcess(home):
            probe.wait_status(device_id, lambda s: s.get("state") == "idle", "the device online", 30)
            for run in range(runs):
                version = run + 2
                release = make_full_release(random_model_file(version, SHAPES), MODEL, version, key, chunk_size=1024)
                count, target = release.manifest.chunk_count, release.manifest.target_sha256.hex()
                broker.publish(release)
                wait_for(lambda c=count: len(home.spooled(MODEL)) >= c // 3, "a third of the chunks", 60, 0.005)
                broker.stop()
                before = home.spooled(MODEL)  # the broker is gone: nothing more arrives until it is back
                broker.start()
                pids.append(broker.process.pid)
                mark = probe.seen
                try:
                    probe.wait_status(device_id, lambda s, v=version: s.get("state") == "idle"
                                      and s["models"].get(MODEL, {}).get("version") == v,
                                      f"release {version} committed", FINISH_S, after=mark)
                except TimeoutError as exc:
                    failures.append(str(exc))
                    continue
                counts = [counter.count(chunk_topic(MODEL, version, "full", i)) for i in range(count)]
                again = [i for i in before if counts[i] != 1]
                spooled_before += len(before)
                refetched_held += len(again)
                refetched_other += sum(c > 1 for i, c in enumerate(counts) if i not in before)
                state = home.state(MODEL)
                if len(before) < count and state == (version, target, target) and not again:
                    held += 1
                else:
                    failures.append(f"release {version}: spooled {len(before)}/{count} before the restart, "
                                    f"fetched again {again[:5]}, running {state[0]} sha256 {state[2]}")
    detail = (f"{runs} restarts mid-download, {held} releases completed; {spooled_before} chunks spooled before the "
              f"restarts, {refetched_held} of them fetched again ({refetched_other} in-flight chunks resent); "
              f"{time.monotonic() - started:.0f} s")
    facts = {"restarts": runs, "completed": held, "spooled_before": spooled_before, "refetched": refetched_held,
             "resent_in_flight": refetched_other, "broker_pids": pids}
    return Outcome("broker-restart", runs, held, detail, facts, tuple(failures))


CASES: list[Case] = [Case("broker-restart", "reliability", _run)]
