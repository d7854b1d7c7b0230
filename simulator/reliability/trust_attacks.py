"""The TUF attack list for trust roots, over a real Mosquitto against a real device process (`rankcast
device run`) provisioned with root v1: the attacker holds a publisher credential and, where it says so,
a stolen root or release key, but never a threshold of root keys. Each step names what must hold; the
device must end on the release the genuine keys signed, on the newest genuine root.

1. a root signed by one root key of three (threshold two): below-threshold, root unchanged;
2. a root whose new root keys sign it, none of the old: below-threshold;
3. a planned rotation: a release signed by a new key, published before the root that lists it, is
   refused (unknown-key) and then taken once the root comes, without being published again;
4. a revocation: a release signed by the revoked key is refused (revoked-key);
5. a root rollback: an old root retained as the next version is refused (bad-root);
6. a restart with every root above v1 deleted from the broker: the device still holds the newest root
   it walked (it kept them) and still refuses the revoked key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from codec.keys import generate_signing_key
from codec.root import sign_root
from codec.topics import root_topic, status_topic
from publisher.release.publish import release_messages
from publisher.trust.edits import RootChange, next_root
from simulator.reliability.case import Case, Outcome
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceHome, DeviceProcess
from simulator.testbed.probe import MqttProbe, ProbeTimeout, broker_probe
from simulator.testbed.synthetic import make_full_release, random_model_file
from simulator.testbed.trust import TrustSetup, make_trust

MODEL = "trust-case"
WAIT_S = 30.0


class _Steps:
    """Checks in order; a step that times out fails and the case goes on with the next."""

    def __init__(self, probe: MqttProbe, device_id: str) -> None:
        self.probe, self.device_id = probe, device_id
        self.checks: list[tuple[str, bool]] = []

    def expect(self, what: str, predicate: Callable[[dict], bool], after: int) -> None:
        try:
            self.probe.wait_status(self.device_id, predicate, what, WAIT_S, after=after)
            self.checks.append((what, True))
        except ProbeTimeout:
            self.checks.append((f"{what} (last status {self.probe.status(self.device_id)})", False))


def _code(status: dict) -> str | None:
    return (status.get("last_error") or {}).get("code")


def _version(status: dict) -> int | None:
    return (status.get("models", {}).get(MODEL) or {}).get("version")


def _root(status: dict) -> int | None:
    return (status.get("trust") or {}).get("root")


def _refused(status: dict) -> str | None:
    return ((status.get("trust") or {}).get("refused_root") or {}).get("code")


def _publish(probe: MqttProbe, messages: list[tuple[str, bytes]]) -> int:
    mark = probe.seen
    for topic, payload in messages:
        probe.publish(topic, payload, retain=True)
    return mark


def _attacks(steps: _Steps, probe: MqttProbe, setup: TrustSetup, start: Callable[[], DeviceProcess]) -> None:
    device = start()
    steps.expect("the device online under root v1", lambda s: _root(s) == 1 and s.get("state") == "idle", 0)
    intruder = generate_signing_key()
    takeover = next_root(setup.roots[-1], RootChange(add_release=[intruder.verify_key]))
    mark = _publish(probe, [(root_topic(2), sign_root(takeover, setup.root_keys[:1]))])
    steps.expect("1. a root signed by one root key of three: below-threshold",
                 lambda s: _refused(s) == "below-threshold" and _root(s) == 1, mark)
    fresh = [generate_signing_key() for _ in range(2)]
    hijack = next_root(setup.roots[-1], RootChange(add_root=[k.verify_key for k in fresh],
                                                   remove_root=list(setup.roots[-1].root_keys)))
    mark = _publish(probe, [(root_topic(2), b""), (root_topic(2), sign_root(hijack, fresh))])
    steps.expect("2. a root signed only by its new root keys: below-threshold",
                 lambda s: _refused(s) == "below-threshold" and _root(s) == 1, mark)
    k2 = generate_signing_key()
    rotated = make_full_release(random_model_file(2), MODEL, 2, k2)
    mark = _publish(probe, release_messages(rotated, probe.prefix))
    steps.expect("3a. a release signed by a key no root lists yet: unknown-key", lambda s: _code(s) == "unknown-key",
                 mark)
    setup.release["k2"] = k2
    mark = _publish(probe, [(root_topic(2), setup.change(RootChange(add_release=[k2.verify_key])))])
    steps.expect("3b. taken once root v2 lists its key, not published again",
                 lambda s: _version(s) == 2 and _root(s) == 2, mark)
    setup.revoke("k1")
    mark = _publish(probe, [(root_topic(3), setup.envelope(3))])
    steps.expect("4a. root v3 (k1 revoked) taken", lambda s: _root(s) == 3, mark)
    revoked = make_full_release(random_model_file(3), MODEL, 3, setup.release["k1"])
    mark = _publish(probe, release_messages(revoked, probe.prefix))
    steps.expect("4b. a release signed by the revoked key: revoked-key",
                 lambda s: _code(s) == "revoked-key" and _version(s) == 2, mark)
    mark = _publish(probe, [(root_topic(4), setup.envelope(2))])
    steps.expect("5. root v2 replayed as v4: bad-root", lambda s: _refused(s) == "bad-root" and _root(s) == 3, mark)
    device.kill()
    mark = _publish(probe, [(root_topic(v), b"") for v in (2, 3, 4)])
    device = start()
    steps.expect("6. after a restart with roots v2..v4 deleted: still root v3, k1 still refused",
                 lambda s: s.get("state") != "offline" and _root(s) == 3 and _code(s) == "revoked-key", mark)
    device.stop()


def _run(workdir: Path, quick: bool) -> Outcome:
    setup = make_trust(workdir / "trust")
    with Broker(workdir / "broker") as broker, broker_probe(broker) as probe:
        device_id = broker.device_ids[0]
        probe.subscribe(status_topic(device_id, broker.prefix))
        probe.publish(root_topic(1, broker.prefix), setup.envelope(1), retain=True)
        first = make_full_release(random_model_file(1), MODEL, 1, setup.release["k1"])
        home = DeviceHome.create(workdir / "device", broker, device_id, MODEL, (), trust_root=setup.first)
        home.install(MODEL, random_model_file(1), 1)
        _publish(probe, release_messages(first, broker.prefix))
        steps = _Steps(probe, device_id)
        _attacks(steps, probe, setup, lambda: DeviceProcess(home))
    failed = tuple(what for what, ok in steps.checks if not ok)
    held = len(steps.checks) - len(failed)
    detail = (f"{held} of {len(steps.checks)} checks held: roots below threshold or signed only by new keys "
              "refused, a rotation taken without re-publishing, a revoked key refused, a root rollback refused, "
              "the newest root kept across a restart with the broker's roots deleted")
    facts = {"checks": len(steps.checks), "held": held, "final_root": 3}
    return Outcome("trust-root", len(steps.checks), held, detail, facts, failed)


CASES = [Case("trust-root", "security", _run)]
