"""The codec's smaller pieces: .rcu update files, MQTT topic names, `inspect` summaries, import hygiene."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import FormatError, Record, Release, VerifyKey, encode_payload, encode_weights, validate_id
from codec.describe import describe
from codec.topics import chunk_topic, manifest_topic, status_topic
from codec.update_file import MAGIC, UpdateFile, read_update_file, write_update_file

# ------------------------------------------------------------------------------------------ .rcu files


def test_an_update_file_roundtrips_through_disk(tmp_path: Path, sample_records: list[Record]) -> None:
    payload, length = encode_payload(sample_records, level=3)
    update = UpdateFile(payload, length, "delta", hashlib.sha256(b"b").digest(), hashlib.sha256(b"t").digest(),
                        {"accuracy": 0.91, "rank": 8, "note": "retrained"})
    path = tmp_path / "update.rcu"
    write_update_file(path, update)
    assert path.read_bytes().startswith(b"RCU1")
    assert read_update_file(path) == update


def _body(**changes: object) -> dict:
    body = {"payload": b"\x28\xb5\x2f\xfd", "decompressed_length": 10, "payload_kind": "full",
            "base_sha256": None, "target_sha256": None, "info": {}}
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "data",
    [b"", b"RCU2" + msgpack.packb(_body()), MAGIC + b"\xc1", MAGIC + msgpack.packb([1]),
     MAGIC + msgpack.packb({k: v for k, v in _body().items() if k != "info"}),
     MAGIC + msgpack.packb({**_body(), "extra": 1}), MAGIC + msgpack.packb(_body(base_sha256=b"short")),
     MAGIC + msgpack.packb(_body(target_sha256="x" * 32)), MAGIC + msgpack.packb(_body(payload="text")),
     MAGIC + msgpack.packb(_body(decompressed_length=1.5)), MAGIC + msgpack.packb(_body(payload_kind="patch")),
     MAGIC + msgpack.packb(_body(info=[]))],
    ids=["empty", "bad-magic", "not-msgpack", "not-a-map", "missing-key", "extra-key", "short-hash", "str-hash",
         "str-payload", "float-length", "unknown-kind", "list-info"],
)
def test_a_malformed_update_file_is_refused(data: bytes) -> None:
    assert UpdateFile.from_bytes(MAGIC + msgpack.packb(_body())) == UpdateFile(**_body())
    with pytest.raises(FormatError):
        UpdateFile.from_bytes(data)


# -------------------------------------------------------------------------------------------- topics


def test_topics_follow_the_documented_layout() -> None:
    assert manifest_topic("kws") == "rankcast/models/kws/manifest"
    assert chunk_topic("kws", 12, "delta", 3) == "rankcast/models/kws/releases/12/delta/chunks/3"
    assert chunk_topic("kws", 12, "full", 3) == "rankcast/models/kws/releases/12/full/chunks/3"
    assert status_topic("dev-1") == "rankcast/devices/dev-1/status"
    assert manifest_topic("kws", prefix="fleet/eu") == "fleet/eu/models/kws/manifest"


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "+", ".hidden", "-x", "x" * 65, "sp ace", "é", "a\x00"])
def test_an_id_that_is_not_one_safe_topic_level_is_refused(bad: str) -> None:
    for topic in (lambda: manifest_topic(bad), lambda: status_topic(bad), lambda: chunk_topic(bad, 1, "delta", 0)):
        with pytest.raises(FormatError):
            topic()


@pytest.mark.parametrize("prefix", ["", "/rankcast", "rankcast/", "a/+/b", "a/#"])
def test_an_invalid_topic_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        manifest_topic("kws", prefix=prefix)


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(max_size=70))
def test_a_valid_id_is_exactly_one_to_64_safe_characters(value: str) -> None:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
    valid = 1 <= len(value) <= 64 and set(value) <= allowed and value[0] not in "._-"
    if valid:
        assert validate_id(value) == value
    else:
        with pytest.raises(FormatError):
            validate_id(value)


# -------------------------------------------------------------------------------------------- describe


def test_describe_recognises_each_file_kind(
    sample_records: list[Record], build_release: Callable[..., Release], trusted: dict[str, VerifyKey]
) -> None:
    payload, length = encode_payload(sample_records, level=3)
    summary = describe(payload)
    assert f"{length:,} decompressed" in summary and f"{len(sample_records)} records" in summary
    assert all(record.name in summary for record in sample_records)
    envelope = build_release().envelope
    assert "signature valid" in describe(envelope, trusted)
    assert "not checked" in describe(envelope) and "devices of any fleet" in describe(envelope)
    assert "fleet          production" in describe(build_release(fleet="production").envelope)
    weights = describe(encode_weights({"fc.weight": np.ones((3, 4)), "fc.bias": np.ones(3)}))
    assert "fc.weight" in weights and "2 tensors, 15 parameters" in weights
    assert "update file: delta update" in describe(UpdateFile(payload, length).to_bytes())


def test_describe_lists_a_manifests_release_index(build_release: Callable[..., Release]) -> None:
    from codec.release_index import IndexEntry

    digest = bytes(range(32))
    index = (IndexEntry(3, "delta", digest, digest, 1234, digest), IndexEntry(5, "full", None, digest, 56789, digest))
    text = describe(build_release(index=index).envelope)
    assert "index          2 releases devices catch up through:" in text
    assert "3 delta        1,234 bytes  from sha256 000102030405" in text
    assert "5 full        56,789 bytes  from any" in text
    assert "index          none" in describe(build_release().envelope)


# --------------------------------------------------------------------------------------------- imports


def test_the_codec_imports_nothing_beyond_its_device_dependencies(child_env: dict[str, str]) -> None:
    script = textwrap.dedent(
        """
        import pkgutil, importlib, sys
        import codec
        for module in pkgutil.iter_modules(codec.__path__):
            importlib.import_module(f"codec.{module.name}")
        banned = ("torch", "matplotlib", "sklearn", "paho", "publisher", "simulator", "device_client", "rankcast")
        print(sorted({name.split(".")[0] for name in sys.modules} & set(banned)))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
