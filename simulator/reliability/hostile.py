"""Hostile input over a real Mosquitto to a real device client (`rankcast device run`, its own process).

Every attack of simulator.reliability.hostile_attacks is published in turn, retained, by an attacker with
a genuine publisher credential. For each the device's retained status must name one of the attack's
codes, the running model file must keep its sha256, and the process must stay alive; after all of them
a valid release must still be applied, and the device's peak RSS must have grown by less than
MEMORY_BOUND_MIB over its idle baseline.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codec.keys import generate_signing_key
from codec.topics import status_topic
from codec.update_file import read_update_file
from simulator.reliability.case import Case, Outcome
from simulator.reliability.hostile_attacks import (
    ATTACKS,
    BASE_VERSION,
    WIDTH,
    Attack,
    AttackContext,
    release_messages,
)
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceHome, DeviceProcess
from simulator.testbed.probe import MqttProbe, ProbeTimeout, broker_probe
from simulator.testbed.synthetic import make_keypair, write_small_update

MEMORY_BOUND_MIB = 64
WAIT_S = 30.0
GOOD_VERSION = 1000


@dataclass(frozen=True)
class AttackResult:
    attack: str
    expected: tuple[str, ...]
    code: str | None
    model_kept: bool
    alive: bool

    @property
    def held(self) -> bool:
        return self.code in self.expected and self.model_kept and self.alive


@dataclass(frozen=True)
class RoundResult:
    attacks: tuple[AttackResult, ...]
    applied_after: bool
    baseline_rss_mib: float
    peak_rss_mib: float

    @property
    def rss_growth_mib(self) -> float:
        return self.peak_rss_mib - self.baseline_rss_mib

    @property
    def memory_held(self) -> bool:
        return self.rss_growth_mib < MEMORY_BOUND_MIB


def _new_error(probe: MqttProbe, device: DeviceProcess, device_id: str, previous: dict | None) -> Callable[[], bool]:
    """True once the status names an error other than ``previous`` (or the device process died)."""
    return lambda: (probe.status(device_id).get("last_error") or None) not in (None, previous) or not device.alive


def run_round(workdir: Path, broker: Broker, device_id: str, attacks: tuple[Attack, ...] = ATTACKS,
              progress: Callable[[str], None] | None = None) -> RoundResult:
    """One device process, every attack in turn, then a valid release; see the module doc."""
    key, public = make_keypair(workdir / "keys")
    base_path, rcu, _ = write_small_update(workdir / "model", width=WIDTH, seed=len(device_id))
    base, update = base_path.read_bytes(), read_update_file(rcu)
    model = f"hostile-{device_id}"
    ctx = AttackContext(model, key, generate_signing_key(), base, update.payload, update.decompressed_length,
                        update.target_sha256)
    home = DeviceHome.create(workdir / device_id, broker, device_id, model, public, url=broker.dev_url)
    home.install(model, base, BASE_VERSION)

    def model_sha256() -> bytes:
        return hashlib.sha256(home.model_file(model)).digest()

    base_sha256 = model_sha256()

    results: list[AttackResult] = []
    with DeviceProcess(home) as device, broker_probe(broker, url=broker.operator_dev_url, timeout=WAIT_S) as attacker:
        attacker.subscribe(status_topic(device_id))
        attacker.wait(lambda: attacker.status(device_id).get("state") == "idle", "the device online")
        time.sleep(0.5)
        baseline = device.memory_mib()
        previous = None
        for number, attack in enumerate(attacks):
            if progress:
                progress(attack.name)
            for topic, payload in attack.build(ctx, BASE_VERSION + 1 + number):
                attacker.publish(topic, payload, retain=True)
            try:
                attacker.wait(_new_error(attacker, device, device_id, previous), f"{attack.name} refused")
                error = attacker.status(device_id).get("last_error") or {}
                previous, code = error or previous, error.get("code")
            except ProbeTimeout:  # a failed attack check, not a crash of the suite
                code = "timeout"
            results.append(AttackResult(attack.name, attack.codes, code, model_sha256() == base_sha256, device.alive))
        for topic, payload in release_messages(ctx.release(GOOD_VERSION), model):
            attacker.publish(topic, payload, retain=True)
        try:
            attacker.wait(lambda: model_sha256() == update.target_sha256
                          and attacker.status(device_id).get("last_error") is None, "the valid release applied")
        except ProbeTimeout:
            pass
        applied = model_sha256() == update.target_sha256 and device.alive
        peak = device.memory_mib()
    return RoundResult(tuple(results), applied, baseline, peak)


def _run_attacks(workdir: Path, quick: bool) -> Outcome:
    """Quick: one device takes every attack; full: three devices in turn, each a fresh process and model."""
    rounds = 1 if quick else 3
    devices = [f"hostile-dev-{i}" for i in range(rounds)]
    with Broker(workdir / "broker", devices) as broker:
        results = [run_round(workdir / device_id, broker, device_id) for device_id in devices]
    failures: list[str] = []
    for result in results:
        failures += [f"{a.attack}: {a.code} (want {'/'.join(a.expected)}), model kept {a.model_kept}, alive {a.alive}"
                     for a in result.attacks if not a.held]
        if not result.applied_after:
            failures.append("the valid release after the attacks was not applied")
        if not result.memory_held:
            failures.append(f"peak RSS grew {result.rss_growth_mib:.1f} MiB")
    runs = sum(len(r.attacks) + 2 for r in results)  # every attack, the release after them, memory
    growth = max(r.rss_growth_mib for r in results)
    detail = (f"{len(ATTACKS)} attacks x {rounds} device process(es) over Mosquitto, each refused with its code, "
              f"model sha256 kept, client alive; valid release applied after; peak RSS growth {growth:.1f} MiB "
              f"(bound {MEMORY_BOUND_MIB})")
    facts = {"rounds": rounds, "codes": [{a.attack: a.code for a in r.attacks} for r in results],
             "applied_after": [r.applied_after for r in results],
             "rss_growth_mib": [round(r.rss_growth_mib, 1) for r in results], "memory_bound_mib": MEMORY_BOUND_MIB}
    return Outcome("hostile-input", runs, runs - len(failures), detail, facts, tuple(failures))


CASES = [Case("hostile-input", "security", _run_attacks)]
