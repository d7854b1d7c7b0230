"""Hostile input during a download in progress, over a real Mosquitto to a real device client (`rankcast
device run`, its own process); the attacks are simulator.reliability.download_attacks.

Each round publishes a genuine full release of a fresh model file but withholds its last WITHHELD chunks,
so the device holds the rest and waits: then the attacker (a genuine publisher credential, no signing
key) does its worst, the withheld chunks are published, and the release must complete with its target
sha256. The device reaches the broker through a link that counts every PUBLISH it delivers per topic, so
a chunk fetched twice shows (simulator.fleet.publish_counter); its statuses are read by the attacker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from codec.keys import SigningKey
from codec.release import Release
from codec.topics import chunk_topic, status_topic
from publisher.release.publish import release_messages
from simulator.fleet.link_thread import ThreadedLink, throttled
from simulator.fleet.publish_counter import PublishCounter
from simulator.reliability.case import Case, Outcome
from simulator.reliability.download_attacks import ATTACKS, Attack
from simulator.testbed.broker import Broker
from simulator.testbed.devices import QUICK_CLIENT, DeviceHome, DeviceProcess
from simulator.testbed.probe import MqttProbe, broker_probe
from simulator.testbed.synthetic import make_full_release, make_keypair, random_model_file
from simulator.testbed.waits import wait_for

MODEL = "hostile-dl"
FLEET = "production"
SHAPES = {"w": (64, 128)}
CHUNK_SIZE = 1024
WITHHELD = 4
RATE = 1024 * 1024
FINISH_S = 60.0
#: Seconds a device waits after subscribing before it reports a manifest that did not come.
MANIFEST_WAIT_S = 2.0
CLIENT = replace(QUICK_CLIENT, manifest_wait=MANIFEST_WAIT_S)


@dataclass
class Scene:
    """A device mid-download of ``release`` (its last chunks ``withheld``), and what an attack needs."""

    broker: Broker
    attacker: MqttProbe
    counter: PublishCounter
    home: DeviceHome
    device: DeviceProcess
    device_id: str
    key: SigningKey
    release: Release
    previous: Release
    withheld: list[tuple[str, bytes]]
    #: Chunk topics the attack delivers again on purpose (a forged chunk, then the genuine one).
    repeated: set[str] = field(default_factory=set)
    #: What the attack saw, for selftest.json (codes, counts).
    facts: dict = field(default_factory=dict)

    model = MODEL
    fleet = FLEET

    @property
    def prefix(self) -> str:
        return self.broker.prefix

    def statuses(self, after: int) -> list[dict]:
        """The device's statuses the attacker received after message number ``after``."""
        return self.attacker.statuses(self.device_id, after)

    def wait_error(self, code: str, after: int, what: str, timeout: float = 30.0) -> dict:
        """The first status after ``after`` whose last error has ``code``."""
        return self.attacker.wait_status(self.device_id, lambda s: (s.get("last_error") or {}).get("code") == code,
                                         what, timeout, after=after)

    def restart_device(self) -> None:
        """Stop the device process (it says offline) and start it again on the same home."""
        self.device.stop()
        self.device = DeviceProcess(self.home)


def _model_file(version: int) -> bytes:
    return random_model_file(1000 + version, SHAPES)


def _start_download(scene: Scene, version: int) -> None:
    """Publish release ``version`` without its last WITHHELD chunks and wait until the device holds the rest."""
    release = make_full_release(_model_file(version), MODEL, version, scene.key, chunk_size=CHUNK_SIZE, fleet=FLEET)
    messages = release_messages(release, scene.prefix)
    count = release.manifest.chunk_count
    scene.withheld = messages[count - WITHHELD:count]
    for topic, payload in messages[:count - WITHHELD] + messages[count:]:
        scene.attacker.publish(topic, payload, retain=True)
    scene.release, scene.repeated, scene.facts = release, set(), {}
    wait_for(lambda: len(scene.home.spooled(MODEL)) >= count - WITHHELD, f"release {version} mostly spooled",
             FINISH_S)
    # and its status says so: a progress status sent before (statuses are paced) must not arrive during the
    # attack and read as chunks lost (it did, on a loaded machine)
    scene.attacker.wait_status(scene.device_id, lambda s: (s.get("progress") or {}).get("release") == version and
                               s["progress"].get("chunks_done", 0) >= count - WITHHELD,
                               f"release {version}'s status showing the spooled chunks", FINISH_S)


def _finish(scene: Scene, after: int) -> list[str]:
    """Publish the withheld chunks; the failures if the release does not complete exactly, once per chunk."""
    manifest = scene.release.manifest
    for topic, payload in scene.withheld:
        scene.attacker.publish(topic, payload, retain=True)
    try:
        scene.attacker.wait_status(scene.device_id, lambda s: s.get("state") == "idle" and s["models"].get(
            MODEL, {}).get("version") == manifest.version, f"release {manifest.version} committed", FINISH_S,
                                   after=after)
    except TimeoutError as exc:
        return [f"{exc}; last status {scene.attacker.status(scene.device_id)}"]
    failures = []
    if scene.home.installed(MODEL) != (manifest.version, manifest.target_sha256.hex()):
        failures.append(f"running {scene.home.installed(MODEL)}, not release {manifest.version}'s file")
    topics = [chunk_topic(MODEL, manifest.version, "full", i, scene.prefix) for i in range(manifest.chunk_count)]
    twice = [t.rsplit("/", 1)[1] for t in topics if t not in scene.repeated and scene.counter.count(t) != 1]
    if twice:
        failures.append(f"chunks {', '.join(twice[:8])} were delivered {scene.counter.count(topics[int(twice[0])])} "
                        "times, not once")
    offline = [s for s in scene.statuses(after) if s.get("state") == "offline"]
    if offline and "restarted" not in scene.facts:
        failures.append("the device went offline during the attack (its connection dropped)")
    if not scene.device.alive:
        failures.append("the device process died")
    return failures


def run_attack(workdir: Path, rounds: int, attack: Attack) -> tuple[int, list[str], list[dict]]:
    """``rounds`` releases in a row, each attacked mid-download by ``attack``; (rounds held, failures, facts)."""
    counter, held, failures, facts = PublishCounter(), 0, [], []
    with Broker(workdir / "broker") as broker, \
            ThreadedLink(broker.dev_port, throttled(RATE), down_tap=counter.stream) as link, \
            broker_probe(broker, url=broker.operator_dev_url) as attacker:
        device_id = broker.device_ids[0]
        attacker.subscribe(status_topic(device_id, broker.prefix))
        key, public = make_keypair(workdir / "keys")
        home = DeviceHome.create(workdir / "device", broker, device_id, MODEL, public, url=link.url(), client=CLIENT,
                                 fleet=FLEET)
        home.install(MODEL, _model_file(1), 1)
        first = make_full_release(_model_file(1), MODEL, 1, key, chunk_size=CHUNK_SIZE, fleet=FLEET)
        scene = Scene(broker, attacker, counter, home, DeviceProcess(home), device_id, key, first, first, [])
        try:
            attacker.wait_status(device_id, lambda s: s.get("state") == "idle", "the device online", 30)
            for number in range(rounds):
                previous = scene.release
                _start_download(scene, number + 2)
                scene.previous = previous
                mark = attacker.seen
                found = attack(scene)
                found += _finish(scene, mark) if not found else []
                held += not found
                failures += [f"round {number + 1}: {failure}" for failure in found]
                facts.append(scene.facts)
        finally:
            scene.device.stop()
    return held, failures, facts


def attack_case(name: str, attack: Attack, checks: str) -> Case:
    """A security case: ``attack`` during a download, 1 round quick and 3 in the full run."""

    def run(workdir: Path, quick: bool) -> Outcome:
        rounds, started = 1 if quick else 3, time.monotonic()
        held, failures, facts = run_attack(workdir, rounds, attack)
        detail = (f"{rounds} download(s) attacked mid-way over Mosquitto, {held} completed with the target sha256 "
                  f"and no chunk delivered twice; {checks}; {time.monotonic() - started:.0f} s")
        return Outcome(name, rounds, held, detail, {"rounds": facts}, tuple(failures))

    return Case(name, "security", run)


CASES: list[Case] = [attack_case(name, attack, checks) for name, attack, checks in ATTACKS]
