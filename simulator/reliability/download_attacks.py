"""The attacks of simulator.reliability.hostile_download: what an attacker with a publisher credential but
no signing key does to a device mid-download, and what the device must show meanwhile.

Each attack gets the Scene (a device holding all but the last chunks of a genuine release), publishes
its messages, waits for the device's answer in its status, and returns the failures it saw; the harness
then publishes the withheld chunks and checks that the release completes, once per chunk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgpack

from codec.keys import SigningKey, generate_signing_key
from codec.manifest import SIGNATURE_DOMAIN, Manifest
from codec.topics import manifest_topic
from publisher.release.publish import release_messages
from publisher.release.retained import prune_releases, read_retained
from simulator.testbed.synthetic import make_full_release, random_model_file

if TYPE_CHECKING:
    from simulator.reliability.hostile_download import Scene

Attack = Callable[["Scene"], list[str]]

#: 41 bytes that are no msgpack: what the review alternated with the genuine manifest.
JUNK = b"\xc1" * 41
#: The largest version a manifest can claim (what a forged one put in the status before).
HUGE_VERSION = 2**64 - 1
JUNK_FLOOD = 1000


def _manifest_topic(scene: Scene) -> str:
    return manifest_topic(scene.model, scene.prefix)


def _forged(manifest: Manifest, signer: SigningKey, **changes: object) -> bytes:
    """``manifest`` with ``changes``, signed by ``signer`` whatever key it names."""
    kept = {"canary": manifest.canary, "index": manifest.index, "fleet": manifest.fleet}
    signed = dataclasses.replace(manifest, **{**kept, **changes}).canonical_bytes()
    return msgpack.packb({"signed": signed, "signature": signer.sign(SIGNATURE_DOMAIN + signed)})


def _still_downloading(scene: Scene, after: int) -> list[str]:
    """Failures if, since message ``after``, the device left its download or lost spooled chunks."""
    time.sleep(0.3)  # the device takes the attacker's last message
    manifest, held = scene.release.manifest, len(scene.home.spooled(scene.model))
    spooled = manifest.chunk_count - len(scene.withheld)
    for status in scene.statuses(after):
        progress = status.get("progress") or {}
        if status.get("state") != "downloading" or progress.get("release") != manifest.version or progress.get(
                "chunks_done", 0) < spooled:
            return [f"during the attack the status said {status.get('state')}, progress {progress}"]
    return [] if held >= spooled else [f"the spool holds {held} chunks, it held {spooled} before the attack"]


def junk_alternation(scene: Scene) -> list[str]:
    """Junk and the genuine manifest, three times each, on the manifest topic."""
    after = scene.attacker.seen
    for _ in range(3):
        scene.attacker.publish(_manifest_topic(scene), JUNK, retain=True)
        scene.attacker.publish(_manifest_topic(scene), scene.release.envelope, retain=True)
    scene.facts["code"] = scene.wait_error("bad-format", after, "the junk refused")["last_error"]["code"]
    return _still_downloading(scene, after)


def junk_genuine_junk(scene: Scene) -> list[str]:
    """Junk, the genuine manifest, junk: the junk stays retained while the release completes."""
    after = scene.attacker.seen
    for payload in (JUNK, scene.release.envelope, JUNK):
        scene.attacker.publish(_manifest_topic(scene), payload, retain=True)
    scene.facts["code"] = scene.wait_error("bad-format", after, "the junk refused")["last_error"]["code"]
    return _still_downloading(scene, after)


def forged_chunk(scene: Scene) -> list[str]:
    """A withheld chunk's topic retains random bytes of the right length; the genuine chunk follows."""
    after = scene.attacker.seen
    topic, genuine = scene.withheld[0]
    scene.attacker.publish(topic, os.urandom(len(genuine)), retain=True)
    index = int(topic.rsplit("/", 1)[1])
    error = scene.wait_error("bad-chunk", after, "the forged chunk reported")["last_error"]
    scene.repeated.add(topic)
    scene.facts.update(code=error["code"], index=index)
    failures = [] if f"chunk {index}" in error["message"] else [f"bad-chunk does not name chunk {index}: {error}"]
    return failures + _still_downloading(scene, after)


def _tree(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under ``folder``: (inode, size, mtime_ns); a write, rename or new name shows."""
    found = {}
    for path in [folder, *folder.rglob("*")]:
        stat = path.stat()
        found[str(path.relative_to(folder))] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return found


def junk_flood(scene: Scene) -> list[str]:
    """1,000 distinct junk envelopes, then a manifest of an unknown key as a marker: nothing on disk changes."""
    after, before = scene.attacker.seen, _tree(scene.home.model_dir)
    for number in range(JUNK_FLOOD):
        envelope = msgpack.packb({"signed": number.to_bytes(2, "big"), "signature": bytes(64)})
        scene.attacker.publish(_manifest_topic(scene), envelope, retain=True)
    foreign = generate_signing_key()
    marker = _forged(scene.release.manifest, foreign, key_id=foreign.verify_key.key_id)
    scene.attacker.publish(_manifest_topic(scene), marker, retain=True)
    scene.wait_error("unknown-key", after, "the marker after the flood refused", timeout=60)
    changed = sorted(name for name, entry in _tree(scene.home.model_dir).items() if before.get(name) != entry)
    scene.facts.update(envelopes=JUNK_FLOOD, changed_on_disk=len(changed))
    failures = [f"the flood changed {changed[:5]} on the device's disk"] if changed else []
    return failures + _still_downloading(scene, after)


def odd_topic_numbers(scene: Scene) -> list[str]:
    """Retained topics with '²', '٣', a leading zero and a 4,301-digit version, read by the publisher's tools."""
    after = scene.attacker.seen
    base = f"{scene.prefix}/models/{scene.model}/releases"
    version = scene.release.manifest.version
    chunks = [f"{base}/²/full/chunks/0", f"{base}/{'9' * 4301}/full/chunks/0", f"{base}/{version}/full/chunks/٣",
              f"{base}/0{version}/full/chunks/0"]
    manifests = [f"{base}/²/full/manifest", f"{base}/{'9' * 4301}/full/manifest", f"{base}/0{version}/full/manifest"]
    for topic in chunks + manifests:
        scene.attacker.publish(topic, scene.release.envelope, retain=True)
    failures = []
    try:
        with scene.broker.publisher() as session:
            ignored = read_retained(session, scene.model, scene.prefix).ignored
            prune_releases(session, scene.model, scene.prefix, dry_run=True)
        scene.facts["ignored_by_release_tools"] = ignored
        if ignored < len(manifests):
            failures.append(f"release list took {len(manifests) - ignored} odd topics for releases")
    except Exception as exc:  # noqa: BLE001 - what the attack is about: the tools must not fall over
        failures.append(f"release list or prune raised {type(exc).__name__}: {exc}")
    failures += _still_downloading(scene, after)
    for topic in chunks + manifests:
        scene.attacker.publish(topic, b"", retain=True)
    return failures


def forged_status_manifest(scene: Scene) -> list[str]:
    """A forged manifest claiming version 2^64-1, and one naming a 1,000-character key id: neither the
    version nor the text may reach the device's status."""
    after = scene.attacker.seen
    text = "<b>rm -rf /</b>" + "A" * 985
    forged = _forged(scene.release.manifest, generate_signing_key(), version=HUGE_VERSION)
    unknown = _forged(scene.release.manifest, generate_signing_key(), key_id=text)
    scene.attacker.publish(_manifest_topic(scene), forged, retain=True)
    scene.wait_error("bad-signature", after, "the forged manifest refused")
    scene.attacker.publish(_manifest_topic(scene), unknown, retain=True)
    error = scene.wait_error("unknown-key", after, "the unknown key refused")["last_error"]
    scene.facts.update(release_reported=error["release"])
    failures = []
    for status in scene.statuses(after):
        shown = json.dumps(status)
        if str(HUGE_VERSION) in shown or "rm -rf" in shown or "AAAA" in shown:
            failures.append(f"the status shows what the forged manifest claims: {shown[:200]}")
            break
        if (status.get("last_error") or {}).get("release") not in (None, 0):
            failures.append(f"a refusal before verification names release {status['last_error']['release']}")
            break
    return failures + _still_downloading(scene, after)


def other_fleet(scene: Scene) -> list[str]:
    """A genuinely signed release of another fleet (the same key signs for staging), published whole."""
    after = scene.attacker.seen
    version = scene.release.manifest.version
    staging = make_full_release(random_model_file(7000 + version), scene.model, version + 50, scene.key,
                                chunk_size=scene.release.manifest.chunk_size, fleet="staging")
    for topic, payload in release_messages(staging, scene.prefix):
        scene.attacker.publish(topic, payload, retain=True)
    error = scene.wait_error("wrong-fleet", after, "the other fleet's release refused")["last_error"]
    hidden = make_full_release(random_model_file(8000 + version), scene.model, version + 60, scene.key,
                               chunk_size=scene.release.manifest.chunk_size, fleet="staging", rollout_percent=0.0)
    scene.attacker.publish(_manifest_topic(scene), hidden.envelope, retain=True)  # outside every rollout
    scene.attacker.wait_status(scene.device_id, lambda s: (s.get("last_error") or {}).get("release") == version + 60,
                               "the other fleet's release outside the rollout refused too", 30, after=after)
    scene.facts.update(code=error["code"], release=error["release"])
    failures = [] if "staging" in error["message"] else [f"wrong-fleet does not name the fleet: {error}"]
    failures += _still_downloading(scene, after)
    fetched = sum(scene.counter.count(topic) for topic, _ in release_messages(staging, scene.prefix)[:-2])
    scene.facts["staging_chunks_fetched"] = fetched
    return failures + ([f"{fetched} chunks of the staging release were delivered"] if fetched else [])


def deleted_manifest(scene: Scene) -> list[str]:
    """The retained manifest deleted mid-download; the device restarted while it is gone; then restored."""
    after = scene.attacker.seen
    scene.attacker.publish(_manifest_topic(scene), b"", retain=True)
    live = scene.wait_error("manifest-missing", after, "the deletion reported")["last_error"]
    failures = _still_downloading(scene, after)
    scene.restart_device()
    scene.facts.update(restarted=True, release=live["release"])
    restarted = scene.attacker.seen
    scene.wait_error("manifest-missing", restarted, "the missing manifest reported after a restart", timeout=30)
    scene.attacker.publish(_manifest_topic(scene), scene.release.envelope, retain=True)  # the operator restores it
    scene.attacker.wait_status(scene.device_id, lambda s: s.get("state") == "downloading" and not s.get("last_error"),
                               "the download resumed", 30, after=restarted)
    return failures


def replayed_manifest(scene: Scene) -> list[str]:
    """The previous genuine release's manifest, captured earlier, retained again on the manifest topic."""
    after = scene.attacker.seen
    scene.attacker.publish(_manifest_topic(scene), scene.previous.envelope, retain=True)
    error = scene.wait_error("replayed", after, "the replay noticed")["last_error"]
    scene.facts.update(code=error["code"], replayed=error["release"])
    old, new = scene.previous.manifest.version, scene.release.manifest.version
    named = f"back to release {old} " in error["message"] and f"after release {new} " in error["message"]
    failures = [] if named else [f"replayed does not name releases {old} and {new}: {error['message']}"]
    return failures + _still_downloading(scene, after)


#: (case name, attack, what is checked besides completion), in the order selftest runs them.
ATTACKS: list[tuple[str, Attack, str]] = [
    ("download-junk-alternation", junk_alternation, "junk and the genuine manifest alternated 3 times: bad-format, "
     "still downloading, spool kept"),
    ("download-junk-genuine-junk", junk_genuine_junk, "junk, genuine, junk (junk stays retained): completes"),
    ("download-forged-chunk", forged_chunk, "a withheld chunk forged: bad-chunk naming it, then the genuine one "
     "completes the release without a new signature"),
    ("download-junk-flood", junk_flood, f"{JUNK_FLOOD:,} junk envelopes: no file written, renamed or created"),
    ("download-odd-topic-numbers", odd_topic_numbers, "topics with '²', '٣', a leading zero, a 4,301-digit "
     "version: release list and prune ignore them, the device stays connected"),
    ("download-forged-status", forged_status_manifest, "forged version 2^64-1 and a 1,000-character key id: "
     "neither reaches the status (release 0, fixed message)"),
    ("download-other-fleet", other_fleet, "genuinely signed releases of fleet staging, one outside every rollout: "
     "wrong-fleet for both, none of their chunks fetched"),
    ("download-deleted-manifest", deleted_manifest, "manifest deleted: manifest-missing, live and after a restart; "
     "restored: resumes from the spool"),
    ("download-replayed-manifest", replayed_manifest, "the previous release's genuine manifest again: replayed"),
]
