"""Ids that are not one safe topic level (wildcards, slashes, empty, too long) are refused everywhere an
id enters: codec.manifest.validate_id, the topic builders, make_release, the broker's account tool and a
device's device.toml (device_id and models). No broker needed: the checks are where the ids come in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from broker_config import BrokerLayout, add_user
from codec.manifest import validate_id
from codec.release import make_release
from codec.topics import BrokerUrl, manifest_topic, status_topic
from device_client.config import BrokerSettings, DeviceConfig, load_config
from simulator.reliability.case import Case, Outcome
from simulator.testbed.devices import render_config
from simulator.testbed.synthetic import make_keypair

BAD_IDS = ("a/b", "+", "#", "dev/#", "a+b", "models/+/manifest", "", "/lead", "-dash-first", "x" * 65, "sp ace")
#: Places that take an id, each checked with every bad id.
PLACES = 7


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


def _device_toml(workdir: Path, device_id: str, model: str, public: Path, password: Path) -> Path:
    """A device.toml naming ``device_id`` and ``model`` as given (DeviceConfig itself checks nothing)."""
    config = DeviceConfig(device_id=device_id, model_dir=workdir / "models", trusted_keys=(public,), models=(model,),
                          broker=BrokerSettings(BrokerUrl.parse("mqtt://127.0.0.1:1"), device_id, password))
    path = workdir / "device.toml"
    path.write_text(render_config(config))
    return path


def topic_id_checks(workdir: Path) -> list[tuple[str, bool]]:
    """(description, held) for every bad id at every place that takes an id."""
    key, public = make_keypair(workdir / "keys")
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
        for field, (device_id, model) in (("device_id", (bad, "m1")), ("models", ("d1", bad))):
            config = _device_toml(workdir, device_id, model, public, password)
            _expect(checks, f"device.toml {field}={bad!r}", lambda config=config: load_config(config),
                    ("bad-config",), field)
    return checks


def _run(workdir: Path, quick: bool) -> Outcome:
    checks = topic_id_checks(workdir)
    failed = tuple(what for what, ok in checks if not ok)
    detail = (f"{len(BAD_IDS)} bad ids (wildcards, slashes, empty, too long) at validate_id, topic builders, "
              "make_release, broker adduser, device.toml device_id/models: all refused (bad-format/bad-config)")
    facts = {"ids": len(BAD_IDS), "places": PLACES, "refused": len(checks) - len(failed)}
    return Outcome("hostile-topic-ids", len(checks), len(checks) - len(failed), detail, facts, failed)


CASES = [Case("hostile-topic-ids", "security", _run)]
