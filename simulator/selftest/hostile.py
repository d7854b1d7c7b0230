"""Hostile input over a real Mosquitto to a real device client (`rankcast device run`, its own process).

The attacker holds a genuine publisher credential but not the signing key: it publishes garbage,
unsigned, foreign-key, forged, truncated and oversized manifests, replays genuinely signed releases
captured earlier (an older one, one for another base, an expired one) and overwrites chunks. A second
group is signed with the trusted key on purpose — a compromised build pipeline, or the defence in depth
behind the signature: a million chunks, a zstd bomb, msgpack depth and length bombs, NaN and Inf scales,
a shape mismatch. For every attack the device's retained status must name the expected code, the
running model file must keep its sha256, and the process must stay alive; after all of them a valid
release must still be applied, and the device's peak RSS must have grown by less than MEMORY_BOUND_MIB
over its idle baseline. Topic ids with wildcards or slashes are refused by validation at the publisher,
the broker account tools and the device config.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import msgpack
import numpy as np
import zstandard

from broker_config import stop_process
from codec.arrays import pack
from codec.keys import SigningKey, generate_signing_key, write_keypair
from codec.manifest import SIGNATURE_DOMAIN, Manifest
from codec.payload import compress, encode_payload
from codec.quantise import lowrank_record
from codec.release import Release, make_release
from codec.topics import chunk_topic, manifest_topic, release_manifest_topic, status_topic
from codec.update_file import read_update_file
from device_client.store import FileModelStore
from simulator.fleet import PREFIX, PUBLISHER, SimBroker
from simulator.fleet_updates import synthetic_update
from simulator.selftest.acl_matrix import MqttProbe
from simulator.selftest.case import Case, Outcome

MEMORY_BOUND_MIB = 64
WAIT_S = 30.0
BASE_VERSION = 2
GOOD_VERSION = 1000
WIDTH = 64

Messages = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Attack:
    """``build(ctx, version)`` returns the messages the attacker publishes; ``codes`` are acceptable."""

    name: str
    codes: tuple[str, ...]
    build: Callable[[_Context, int], Messages]
    signed: bool = False  # True: signed with the trusted key (defence in depth, not an attacker without it)


@dataclass
class _Context:
    model: str
    key: SigningKey
    foreign: SigningKey
    base: bytes
    update_payload: bytes
    update_length: int
    target_sha256: bytes

    def release(self, version: int, key: SigningKey | None = None, **options) -> Release:
        """A genuine delta release of the synthetic update (signed with ``key``, default the trusted one)."""
        values = dict(model=self.model, version=version, payload=self.update_payload,
                      decompressed_length=self.update_length, target_sha256=self.target_sha256,
                      key=key or self.key, base_version=BASE_VERSION, base_sha256=hashlib.sha256(self.base).digest(),
                      chunk_size=256, lifetime_s=3600)
        values.update(options)
        return make_release(**values)

    def signed_payload(self, version: int, payload: bytes, decompressed_length: int) -> Release:
        """A release the trusted key signs over a hostile payload."""
        return self.release(version, payload=payload, decompressed_length=decompressed_length,
                            target_sha256=hashlib.sha256(b"never").digest())


def _messages(release: Release, model: str, chunks: list[bytes] | None = None) -> Messages:
    chunks = release.chunks if chunks is None else chunks
    version = release.manifest.version
    out = [(chunk_topic(model, version, i, PREFIX), chunk) for i, chunk in enumerate(chunks)]
    return out + [(release_manifest_topic(model, version, PREFIX), release.envelope),
                  (manifest_topic(model, PREFIX), release.envelope)]


def _manifest_only(ctx: _Context, envelope: bytes) -> Messages:
    return [(manifest_topic(ctx.model, PREFIX), envelope)]


def _forge(manifest: Manifest, signer: SigningKey) -> bytes:
    """An envelope over ``manifest`` as given (no validation), signed by ``signer``."""
    signed = manifest.canonical_bytes()
    return msgpack.packb({"signed": signed, "signature": signer.sign(SIGNATURE_DOMAIN + signed)})


# -- attacks by a publisher credential without the signing key ----------------------------------------------

def _garbage(ctx: _Context, version: int) -> Messages:
    stray = [(f"{PREFIX}/models/{ctx.model}/releases/x/chunks/y", os.urandom(300)),
             (f"{PREFIX}/models/{ctx.model}/junk", os.urandom(300)),
             (chunk_topic(ctx.model, version, 0, PREFIX), os.urandom(300))]
    return stray + _manifest_only(ctx, b"\xc1" + os.urandom(2047))


def _unsigned(ctx: _Context, version: int) -> Messages:
    signed = ctx.release(version).manifest.canonical_bytes()
    return _manifest_only(ctx, msgpack.packb({"signed": signed, "signature": b""}))


def _foreign_key(ctx: _Context, version: int) -> Messages:
    return _messages(ctx.release(version, key=ctx.foreign), ctx.model)


def _forged_signature(ctx: _Context, version: int) -> Messages:
    """Names the trusted key but is signed by the attacker's."""
    return _manifest_only(ctx, _forge(ctx.release(version).manifest, ctx.foreign))


def _truncated(ctx: _Context, version: int) -> Messages:
    envelope = ctx.release(version).envelope
    return _manifest_only(ctx, envelope[: len(envelope) * 2 // 3])


def _oversized(ctx: _Context, version: int) -> Messages:
    return _manifest_only(ctx, os.urandom(200 * 1024))


def _replay_older(ctx: _Context, version: int) -> Messages:
    """A genuine release 1, captured when it was current."""
    return _messages(ctx.release(1, base_version=0), ctx.model)


def _other_base(ctx: _Context, version: int) -> Messages:
    """A genuine release made for another model file."""
    return _messages(ctx.release(version, base_sha256=hashlib.sha256(b"another model file").digest()), ctx.model)


def _expired(ctx: _Context, version: int) -> Messages:
    return _messages(ctx.release(version, created=int(time.time()) - 7200, lifetime_s=3600), ctx.model)


def _million_chunks_forged(ctx: _Context, version: int) -> Messages:
    manifest = replace(ctx.release(version).manifest, payload_length=1_000_000 * 256)
    return _manifest_only(ctx, _forge(manifest, ctx.foreign))


def _long_chunk(ctx: _Context, version: int) -> Messages:
    """A genuine release whose retained chunk 0 the attacker overwrote with a longer one."""
    release = ctx.release(version)
    return _messages(release, ctx.model, [release.chunks[0] + b"\0" * 64, *release.chunks[1:]])


def _garbage_chunk(ctx: _Context, version: int) -> Messages:
    release = ctx.release(version)
    chunks = list(release.chunks)
    chunks[-1] = os.urandom(len(chunks[-1]))
    return _messages(release, ctx.model, chunks)


# -- signed with the trusted key: the codec's limits behind the signature -----------------------------------

def _million_chunks_signed(ctx: _Context, version: int) -> Messages:
    manifest = replace(ctx.release(version).manifest, payload_length=1_000_000 * 256)
    return _manifest_only(ctx, _forge(manifest, ctx.key))


def _zstd_bomb(ctx: _Context, version: int) -> Messages:
    """256 MiB of zeros in a frame that does not declare its size; the manifest declares 4 KiB."""
    compressor = zstandard.ZstdCompressor(level=3, write_content_size=False)
    stream = compressor.compressobj()
    block = bytes(1 << 20)
    payload = b"".join(stream.compress(block) for _ in range(256)) + stream.flush()
    return _messages(ctx.signed_payload(version, payload, 4096), ctx.model)


def _document(records_header: bytes, body: bytes) -> bytes:
    return b"\x82" + msgpack.packb("format") + msgpack.packb(1) + msgpack.packb("records") + records_header + body


def _depth_bomb(ctx: _Context, version: int) -> Messages:
    document = _document(b"\x91", b"\x91" * 100_000 + b"\xc0")
    return _messages(ctx.signed_payload(version, compress(document), len(document)), ctx.model)


def _length_bomb(ctx: _Context, version: int) -> Messages:
    document = _document(b"\xdd\xff\xff\xff\xff", b"\xc0" * 16)
    return _messages(ctx.signed_payload(version, compress(document), len(document)), ctx.model)


def _bin_length_bomb(ctx: _Context, version: int) -> Messages:
    body = b"\x81" + msgpack.packb("data") + b"\xc6\xff\xff\xff\xf0" + b"\0" * 64
    document = _document(b"\x91", body)
    return _messages(ctx.signed_payload(version, compress(document), len(document)), ctx.model)


def _lowrank(ctx: _Context, version: int, shape: tuple[int, int], scale: str | None, value: float) -> Messages:
    rng = np.random.default_rng(version)
    record = lowrank_record("fc1.weight", shape, rng.normal(size=(shape[0], 4)) * 0.01, rng.normal(size=(4, shape[1])))
    if scale is not None:
        values = np.ones(shape[0] if scale == "u_scale" else shape[1], np.float32)
        values[1] = value
        record = replace(record, **{scale: pack(values, "f32")})
    payload, length = encode_payload([record])
    return _messages(ctx.signed_payload(version, payload, length), ctx.model)


def _nan_scale(ctx: _Context, version: int) -> Messages:
    return _lowrank(ctx, version, (WIDTH, WIDTH), "u_scale", float("nan"))


def _inf_scale(ctx: _Context, version: int) -> Messages:
    return _lowrank(ctx, version, (WIDTH, WIDTH), "v_scale", float("inf"))


def _shape_mismatch(ctx: _Context, version: int) -> Messages:
    return _lowrank(ctx, version, (WIDTH // 2, WIDTH // 2), None, 0.0)


#: In this order, so that consecutive attacks never leave the same last_error behind.
ATTACKS = (
    Attack("garbage-on-model-topics", ("bad-format",), _garbage),
    Attack("foreign-key", ("unknown-key",), _foreign_key),
    Attack("unsigned-manifest", ("bad-format",), _unsigned),
    Attack("forged-signature", ("bad-signature",), _forged_signature),
    Attack("truncated-manifest", ("bad-format",), _truncated),
    Attack("replay-older-release", ("old-version",), _replay_older),
    Attack("oversized-manifest", ("over-limit",), _oversized),
    Attack("release-for-other-base", ("wrong-base",), _other_base),
    Attack("expired-manifest", ("expired",), _expired),
    Attack("million-chunks-forged", ("bad-signature",), _million_chunks_forged),
    Attack("chunk-longer-than-declared", ("bad-chunk",), _long_chunk),
    Attack("million-chunks-signed", ("over-limit",), _million_chunks_signed, signed=True),
    Attack("garbage-chunk", ("bad-chunk",), _garbage_chunk),
    Attack("zstd-bomb", ("over-limit", "bad-hash"), _zstd_bomb, signed=True),
    Attack("msgpack-depth-bomb", ("bad-format", "over-limit"), _depth_bomb, signed=True),
    Attack("msgpack-length-bomb", ("over-limit", "bad-format"), _length_bomb, signed=True),
    Attack("shape-mismatch", ("model-mismatch",), _shape_mismatch, signed=True),
    Attack("msgpack-bin-length-bomb", ("bad-format", "over-limit"), _bin_length_bomb, signed=True),
    Attack("nan-scale", ("non-finite",), _nan_scale, signed=True),
    Attack("inf-scale", ("non-finite",), _inf_scale, signed=True),
)


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


def _rss_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class DeviceProcess:
    """`python -m rankcast device run` for one device following one model, on the broker's plain listener."""

    def __init__(self, home: Path, broker: SimBroker, device_id: str, model: str, public: Path, base: bytes) -> None:
        self.home, self.model, self.device_id = home, model, device_id
        home.mkdir(parents=True, exist_ok=True)
        (home / "base.rcw").write_bytes(base)
        FileModelStore(home / "models").install(model, home / "base.rcw", BASE_VERSION)
        self.config = home / "device.toml"
        self.config.write_text(
            f'device_id = "{device_id}"\nmodel_dir = "models"\ntrusted_keys = ["{public}"]\nmodels = ["{model}"]\n\n'
            f'[broker]\nurl = "mqtt://127.0.0.1:{broker.dev_port}"\nusername = "{device_id}"\n'
            f'password_file = "{broker.device_password}"\n\n'
            "[client]\nbackoff_initial = 0.05\nbackoff_max = 0.5\nstatus_interval = 0.2\nconnect_timeout = 5\n"
        )
        self.log = open(home / "device.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "rankcast", "device", "run", "--config",
                                         str(self.config)], stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def model_sha256(self) -> bytes:
        return hashlib.sha256(FileModelStore(self.home / "models").model_path(self.model).read_bytes()).digest()

    def rss(self, field: str = "VmHWM") -> float:
        return _rss_mib(self.process.pid, field)

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def _status(watcher: MqttProbe, device_id: str) -> dict:
    payload = watcher.latest.get(status_topic(device_id, PREFIX))
    return json.loads(payload) if payload else {}


def _new_error(watcher: MqttProbe, device: DeviceProcess, previous: dict | None) -> Callable[[], bool]:
    """True once the status names an error other than ``previous`` (or the device process died)."""
    return lambda: (_status(watcher, device.device_id).get("last_error") or None) not in (None, previous) \
        or not device.alive


def run_round(workdir: Path, broker: SimBroker, device_id: str, attacks: tuple[Attack, ...] = ATTACKS,
              progress: Callable[[str], None] | None = None) -> RoundResult:
    """One device process, every attack in turn, then a valid release; see the module doc."""
    key, foreign = generate_signing_key(), generate_signing_key()
    _, public = write_keypair(workdir / "keys", key)
    base_path, rcu, _ = synthetic_update(workdir / "model", width=WIDTH, seed=len(device_id))
    base = base_path.read_bytes()
    update = read_update_file(rcu)
    model = f"hostile-{device_id}"
    ctx = _Context(model, key, foreign, base, update.payload, update.decompressed_length, update.target_sha256)
    base_sha = hashlib.sha256(base).digest()
    publisher_password = broker.layout.credential(PUBLISHER).read_text().splitlines()[0]
    device = DeviceProcess(workdir / device_id, broker, device_id, model, public, base)
    results: list[AttackResult] = []
    try:
        with MqttProbe(broker.dev_port, PUBLISHER, publisher_password, timeout=WAIT_S) as attacker:
            attacker.subscribe(status_topic(device_id, PREFIX))
            attacker.wait(lambda: _status(attacker, device_id).get("state") == "idle", "the device online")
            time.sleep(0.5)
            baseline = device.rss()
            previous = None
            for number, attack in enumerate(attacks):
                if progress:
                    progress(attack.name)
                for topic, payload in attack.build(ctx, BASE_VERSION + 1 + number):
                    attacker.publish(topic, payload, retain=True)
                code = None
                try:
                    attacker.wait(_new_error(attacker, device, previous), f"{attack.name} refused")
                    error = _status(attacker, device_id).get("last_error") or {}
                    previous, code = error or previous, error.get("code")
                except Exception:  # noqa: BLE001 - a timeout is a failed attack check, not a crash of the suite
                    code = "timeout"
                results.append(AttackResult(attack.name, attack.codes, code, device.model_sha256() == base_sha,
                                            device.alive))
            good = ctx.release(GOOD_VERSION)
            for topic, payload in _messages(good, model):
                attacker.publish(topic, payload, retain=True)
            try:
                attacker.wait(lambda: device.model_sha256() == update.target_sha256 and
                              (_status(attacker, device_id).get("last_error") is None), "the valid release applied")
            except Exception:  # noqa: BLE001
                pass
            applied = device.model_sha256() == update.target_sha256 and device.alive
            peak = device.rss()
    finally:
        device.stop()
    return RoundResult(tuple(results), applied, baseline, peak)


def _run_attacks(workdir: Path, quick: bool) -> Outcome:
    """Quick: one device takes every attack; full: three devices in turn, each a fresh process and model."""
    rounds = 1 if quick else 3
    devices = [f"hostile-dev-{i}" for i in range(rounds)]
    results: list[RoundResult] = []
    with SimBroker(workdir / "broker", devices) as broker:
        for device_id in devices:
            results.append(run_round(workdir / device_id, broker, device_id))
    runs = held = 0
    failures: list[str] = []
    for result in results:
        for attack in result.attacks:
            runs, held = runs + 1, held + attack.held
            if not attack.held:
                failures.append(f"{attack.attack}: {attack.code} (want {'/'.join(attack.expected)}), "
                                f"model kept {attack.model_kept}, alive {attack.alive}")
        runs += 2
        held += result.applied_after + result.memory_held
        if not result.applied_after:
            failures.append("the valid release after the attacks was not applied")
        if not result.memory_held:
            failures.append(f"peak RSS grew {result.rss_growth_mib:.1f} MiB")
    growth = max(r.rss_growth_mib for r in results)
    detail = (f"{len(ATTACKS)} attacks x {rounds} device process(es) over Mosquitto, each refused with its code, "
              f"model sha256 kept, client alive; valid release applied after; peak RSS growth {growth:.1f} MiB "
              f"(bound {MEMORY_BOUND_MIB})")
    if failures:
        detail += "; FAILED: " + "; ".join(failures[:5])
    return Outcome("hostile-input", runs, held, detail)


# -- topic ids with wildcards or slashes --------------------------------------------------------------------

BAD_IDS = ("a/b", "+", "#", "dev/#", "a+b", "models/+/manifest", "", "/lead", "-dash-first", "x" * 65, "sp ace")


def _expect(checks: list[tuple[str, bool]], what: str, call: Callable[[], object], codes: tuple[str, ...],
            mention: str = "") -> None:
    """``call`` must raise an error whose code is in ``codes`` and whose message names ``mention``."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the check is which error, with which code
        held = getattr(exc, "code", None) in codes and mention in str(exc)
        checks.append((f"{what}: {getattr(exc, 'code', type(exc).__name__)}", held))
        return
    checks.append((f"{what}: accepted", False))


def topic_id_checks(workdir: Path) -> list[tuple[str, bool]]:
    """(description, held) for every bad id at every place that takes an id."""
    from broker_config import BrokerLayout, add_user
    from codec.manifest import validate_id
    from device_client.config import load_config

    key = generate_signing_key()
    _, public = write_keypair(workdir / "keys", key)
    password = workdir / "device.password"
    password.write_text("secret\n")
    checks: list[tuple[str, bool]] = []
    for bad in BAD_IDS:
        _expect(checks, f"validate_id({bad!r})", lambda bad=bad: validate_id(bad, "model id"), ("bad-format",),
                "no '/', '+' or '#'")
        _expect(checks, f"manifest_topic({bad!r})", lambda bad=bad: manifest_topic(bad), ("bad-format",))
        _expect(checks, f"status_topic({bad!r})", lambda bad=bad: status_topic(bad), ("bad-format",))
        _expect(checks, f"make_release(model={bad!r})", lambda bad=bad: make_release(
            model=bad, version=1, payload=b"x" * 300, decompressed_length=300, target_sha256=bytes(32), key=key,
            full=True, chunk_size=256), ("bad-format",))
        _expect(checks, f"broker adduser {bad!r}", lambda bad=bad: add_user(
            BrokerLayout(workdir / "broker"), bad, "device", "pw"), ("bad-format",))
        for field in ("device_id", "models"):
            config = workdir / "device.toml"
            device_id, models = (bad, "m1") if field == "device_id" else ("d1", bad)
            config.write_text(f'device_id = {json.dumps(device_id)}\nmodel_dir = "models"\n'
                              f'trusted_keys = ["{public}"]\nmodels = [{json.dumps(models)}]\n\n'
                              f'[broker]\nurl = "mqtt://127.0.0.1:1"\npassword_file = "{password}"\n')
            _expect(checks, f"device.toml {field}={bad!r}", lambda config=config: load_config(config),
                    ("bad-config",), field)
    return checks


def _run_topic_ids(workdir: Path, quick: bool) -> Outcome:
    checks = topic_id_checks(workdir)
    failed = [what for what, ok in checks if not ok]
    detail = (f"{len(BAD_IDS)} bad ids (wildcards, slashes, empty, too long) at validate_id, topic builders, "
              "make_release, broker adduser, device.toml device_id/models: all refused (bad-format/bad-config)")
    if failed:
        detail += "; FAILED: " + "; ".join(failed[:5])
    return Outcome("hostile-topic-ids", len(checks), len(checks) - len(failed), detail)


CASES = [
    Case("hostile-input", "security", _run_attacks),
    Case("hostile-topic-ids", "security", _run_topic_ids),
]
