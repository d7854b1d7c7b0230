"""Building releases for publishing: durations, chunk sizes and the signing key as an operator gives them,
stable rollout cohorts, refusing incomplete updates."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec.keys import PRIVATE_NAME, PUBLIC_NAME, generate_signing_key
from codec.limits import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from codec.update_file import UpdateFile
from publisher.errors import ConfigError, ReleaseInputError, SigningKeyError
from publisher.release.build import (
    check_chunk_size,
    full_release,
    load_release_key,
    parse_duration,
    rollout_salt,
    update_release,
)
from simulator.testbed import synthetic


@pytest.mark.parametrize(("text", "seconds"), [("3600s", 3600), ("90m", 5400), ("12h", 43200),
                                               ("30d", 2592000), ("2w", 1209600), ("1d12h", 129600)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "12", "h", "1.5d", "-1d", "1d 2h", "3y"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--expires"):
        parse_duration(text)


@pytest.mark.parametrize("size", [MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, 0])
def test_chunk_sizes_devices_refuse_are_refused_with_the_range(size: int) -> None:
    with pytest.raises(ConfigError, match=f"{MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}"):
        check_chunk_size(size)
    with pytest.raises(ConfigError, match="--chunk-size"):
        full_release(synthetic.random_model_file(1), model="m", version=1, key=generate_signing_key(),
                     chunk_size=size, lifetime_s=60)
    assert check_chunk_size(MIN_CHUNK_SIZE) == MIN_CHUNK_SIZE and check_chunk_size(MAX_CHUNK_SIZE) == MAX_CHUNK_SIZE


def test_the_signing_key_is_the_private_one(tmp_path: Path) -> None:
    key, public = synthetic.make_keypair(tmp_path)
    assert load_release_key(tmp_path / PRIVATE_NAME).verify_key.key_id == key.verify_key.key_id
    assert public.name == PUBLIC_NAME
    with pytest.raises(SigningKeyError, match=f"public key devices trust.*{PRIVATE_NAME}"):
        load_release_key(public)
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(SigningKeyError, match="rankcast keygen"):
        load_release_key(tmp_path / "notes.txt")


def test_cohorts_grow_when_a_release_is_published_again_with_a_higher_rollout() -> None:
    key, base = generate_signing_key(), synthetic.random_model_file(1)
    update = synthetic.random_update(base, 2)
    narrow, wide = (update_release(update, model="m", version=5, key=key, rollout_percent=p, lifetime_s=60)
                    for p in (10.0, 50.0))
    devices = [f"pump-{i}" for i in range(400)]
    first = {d for d in devices if narrow.manifest.in_rollout(d)}
    assert first and first <= {d for d in devices if wide.manifest.in_rollout(d)}
    assert rollout_salt("m", 5) != rollout_salt("m", 6)


def test_an_update_without_a_target_cannot_be_published() -> None:
    update = synthetic.random_update(synthetic.random_model_file(1), 2)
    blind = UpdateFile(update.payload, update.decompressed_length, "delta", update.base_sha256, None)
    with pytest.raises(ReleaseInputError, match="target sha256"):
        update_release(blind, model="m", version=2, key=generate_signing_key(), lifetime_s=60)
