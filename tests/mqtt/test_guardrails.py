"""`rankcast publish` checks the broker's current release before it sends anything, and `rankcast release
delete` clears what a mistake left (real Mosquitto, the real CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec.keys import PRIVATE_NAME
from codec.manifest import read_manifest_unverified
from codec.topics import chunk_topic
from codec.update_file import UpdateFile, updated_model_file, write_update_file
from publisher.release.publish import release_messages
from rankcast.cli import main
from simulator.testbed import synthetic
from simulator.testbed.broker import PUBLISHER, Broker


def _login(broker: Broker) -> list[str]:
    return ["--broker", broker.operator_url, "--username", PUBLISHER, "--password-file",
            str(broker.layout.credential(PUBLISHER)), "--cafile", str(broker.layout.ca_cert)]


def _retained(broker: Broker, model: str) -> dict[str, bytes]:
    with broker.publisher() as session:
        return session.retained([f"rankcast/models/{model}/#"])


def _publish(broker: Broker, model: str, key_folder: Path) -> list[str]:
    return ["publish", *_login(broker), "--model", model, "--key", str(key_folder / PRIVATE_NAME),
            "--chunk-size", "512"]


@pytest.fixture
def published(broker, model_id, signing, tmp_path):
    """Version 2 of ``model_id`` published from the command line, on top of the flashed version 1."""
    base = synthetic.random_model_file(40)
    (tmp_path / "v1.rcw").write_bytes(base)
    update = synthetic.random_update(base, 41)
    write_update_file(tmp_path / "v2.rcu", update)
    publish = _publish(broker, model_id, signing[1].parent)
    assert main([*publish, "--update", str(tmp_path / "v2.rcu"), "--version", "2", "--deployed",
                 str(tmp_path / "v1.rcw"), "--new-model"]) == 0
    return publish, updated_model_file(base, update)


def _refused(capsys, broker: Broker, model: str, argv: list[str], code: str) -> None:
    before = _retained(broker, model)
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"rankcast: error [{code}]: ") and err.count("\n") == 1, err
    assert _retained(broker, model) == before, "nothing was published"


def test_each_guardrail_refuses_and_leaves_the_broker_unchanged(
    broker, model_id, signing, tmp_path, capsys, published
) -> None:
    publish, v2 = published
    (tmp_path / "v2.rcw").write_bytes(v2)
    other = synthetic.random_update(v2, 42)
    write_update_file(tmp_path / "other.rcu", other)
    stranger = synthetic.random_update(synthetic.random_model_file(43), 44)
    write_update_file(tmp_path / "stranger.rcu", stranger)
    flipped = bytearray(other.payload)
    flipped[len(flipped) // 2] ^= 0x40
    write_update_file(tmp_path / "flipped.rcu", UpdateFile(bytes(flipped), other.decompressed_length, "delta",
                                                            other.base_sha256, other.target_sha256))
    synthetic.make_keypair(tmp_path / "foreign")  # a key no device trusts
    update = lambda name: ["--update", str(tmp_path / name)]  # noqa: E731
    typo = "typo-" + model_id
    _refused(capsys, broker, typo, [*_publish(broker, typo, signing[1].parent), *update("other.rcu"), "--version",
                                    "3"], "new-model")
    _refused(capsys, broker, model_id, [*publish, *update("other.rcu"), "--version", "2"], "version-taken")
    _refused(capsys, broker, model_id, [*publish, *update("other.rcu"), "--version", "1"], "not-newer")
    _refused(capsys, broker, model_id, [*publish, *update("stranger.rcu"), "--version", "3"], "unknown-base")
    _refused(capsys, broker, model_id, [*_publish(broker, model_id, tmp_path / "foreign"), *update("other.rcu"),
                                        "--version", "3"], "untrusted-key")
    _refused(capsys, broker, model_id, [*publish, *update("flipped.rcu"), "--version", "3", "--deployed",
                                        str(tmp_path / "v2.rcw")], "bad-update")
    assert main([*publish, *update("other.rcu"), "--version", "3", "--deployed", str(tmp_path / "v2.rcw"),
                 "--fleet", "production"]) == 0, "naming a fleet for the first time: allowed"
    _refused(capsys, broker, model_id, [*publish, *update("other.rcu"), "--version", "3", "--rollout", "50"],
             "other-fleet")
    _refused(capsys, broker, model_id, [*publish, *update("other.rcu"), "--version", "3", "--rollout", "50",
                                        "--fleet", "staging"], "other-fleet")
    _refused(capsys, broker, model_id, [*publish, *update("other.rcu"), "--version", "3", "--fleet", "eu/prod"],
             "bad-config")
    assert main([*publish, *update("other.rcu"), "--version", "3", "--rollout", "50", "--fleet", "production"]) == 0, \
        "same payload: allowed"
    manifest = read_manifest_unverified(_retained(broker, model_id)[f"rankcast/models/{model_id}/manifest"])
    assert (manifest.fleet, manifest.rollout_percent) == ("production", 50.0)


def test_release_delete_clears_an_interrupted_publish_and_a_mistyped_model(
    broker, model_id, signing, tmp_path, capsys, published
) -> None:
    _, v2 = published
    half, _ = synthetic.make_delta_release(v2, 45, model_id, 3, signing[0], chunk_size=256)
    with broker.publisher() as session:  # the publisher died after the chunks, before any manifest
        session.publish_all(release_messages(half, "rankcast")[:-2])
    assert main(["release", "list", *_login(broker), "--model", model_id]) == 0
    assert "release 3" not in capsys.readouterr().out, "without its manifest no list shows it"
    assert main(["release", "delete", *_login(broker), "--model", model_id, "--version", "3"]) == 0
    assert f"cleared {half.manifest.chunk_count} retained topics" in capsys.readouterr().out
    assert chunk_topic(model_id, 3, "delta", 0) not in _retained(broker, model_id)
    _refused(capsys, broker, model_id, ["release", "delete", *_login(broker), "--model", model_id, "--version",
                                        "2"], "in-use")
    typo = "typo-" + model_id
    with broker.publisher() as session:
        session.publish_all(release_messages(half, "rankcast")[:3])
    assert main(["release", "delete", *_login(broker), "--model", typo, "--all"]) == 0
    assert _retained(broker, typo) == {}
    assert len(_retained(broker, model_id)) > 0, "the real model is untouched"


def test_the_index_pins_only_what_the_publishers_key_signed_and_widening_keeps_the_fallback(
    broker, model_id, signing, tmp_path, published
) -> None:
    publish, v2 = published
    (tmp_path / "v2.rcw").write_bytes(v2)
    foreign, _ = synthetic.make_keypair(tmp_path / "foreign")
    forged, _ = synthetic.make_delta_release(v2, 46, model_id, 3, foreign, chunk_size=256)
    with broker.publisher() as session:  # a publisher account without the signing key, and a mistyped topic
        session.publish_all([(f"rankcast/models/{model_id}/releases/3/delta/manifest", forged.envelope),
                             (f"rankcast/models/{model_id}/releases/03/delta/manifest", forged.envelope)])
    write_update_file(tmp_path / "v4.rcu", synthetic.random_update(v2, 47))
    assert main([*publish, "--update", str(tmp_path / "v4.rcu"), "--version", "4", "--deployed",
                 str(tmp_path / "v2.rcw")]) == 0

    def indexed() -> list[tuple[int, str]]:
        envelope = _retained(broker, model_id)[f"rankcast/models/{model_id}/manifest"]
        return [(e.version, e.kind) for e in read_manifest_unverified(envelope).index]

    assert indexed() == [(2, "delta"), (4, "full")], "the foreign release 3 is not pinned"
    assert main([*publish, "--update", str(tmp_path / "v4.rcu"), "--version", "4", "--rollout", "50"]) == 0
    assert indexed() == [(2, "delta"), (4, "full")], "publishing it again (a rollout changed) keeps its full fallback"
