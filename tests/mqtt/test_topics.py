"""Topic names and broker URLs: what devices subscribe to and parse back, property-tested."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec.topics import (
    BrokerUrl,
    ModelTopic,
    chunk_topic,
    manifest_topic,
    parse_model_topic,
    release_manifest_topic,
    status_topic,
)

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
numbers = st.integers(min_value=0, max_value=10**9)


@given(ids, numbers, st.sampled_from(["delta", "full"]), numbers)
def test_model_topics_parse_back_to_what_they_name(model: str, version: int, kind: str, index: int) -> None:
    assert parse_model_topic(manifest_topic(model)) == ModelTopic(model)
    named = parse_model_topic(release_manifest_topic(model, version, kind))
    assert named == ModelTopic(model, version, kind) and named.is_release_manifest and not named.is_chunk
    chunk = parse_model_topic(chunk_topic(model, version, kind, index))
    assert chunk == ModelTopic(model, version, kind, index) and chunk.is_chunk and not chunk.is_manifest
    assert parse_model_topic(status_topic(model)) is None


@pytest.mark.parametrize("topic", [
    "rankcast/models/m", "rankcast/models/m/releases/x/delta/chunks/1", "rankcast/models/m/releases/1/delta/chunks/-1",
    "rankcast/models/m/releases/1/delta/chunks/1/extra", "other/models/m/manifest", "rankcast/models/m/manifest/x",
    "rankcast/models/m/releases/1/chunks/1", "rankcast/models/m/releases/1/other/chunks/1",
    "rankcast/models/m/releases/1/manifest", "rankcast/models/m/releases/03/delta/manifest",
    "rankcast/models/m/releases/\u00b2/delta/manifest", "rankcast/models/m/releases/1/delta/chunks/01",
])
def test_other_topics_name_nothing(topic: str) -> None:
    assert parse_model_topic(topic) is None


def test_a_release_is_a_delta_or_a_full_release() -> None:
    with pytest.raises(ValueError, match="delta"):
        chunk_topic("m", 1, "patch", 0)


@pytest.mark.parametrize(("device", "bad"), [("a/b", True), ("+", True), ("#", True), ("pump-1", False)])
def test_ids_cannot_escape_their_topic_level(device: str, bad: bool) -> None:
    if bad:
        with pytest.raises(ValueError):
            status_topic(device)
    else:
        assert status_topic(device) == "rankcast/devices/pump-1/status"


def test_broker_urls() -> None:
    assert BrokerUrl.parse("mqtts://broker.example.com") == BrokerUrl("broker.example.com", 8883, True)
    assert BrokerUrl.parse("mqtt://127.0.0.1:1884") == BrokerUrl("127.0.0.1", 1884, False)
    assert str(BrokerUrl.parse("mqtts://h:1")) == "mqtts://h:1"
    for bad in ("http://h", "mqtts://", "mqtts://user:pw@h", "mqtt://h/path", "mqtt://h:99999"):
        with pytest.raises(ValueError):
            BrokerUrl.parse(bad)
