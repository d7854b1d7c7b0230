"""Policy: which verified manifests a device accepts (version, base, expiry, model, key) and its cohort."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import msgpack
import pytest

from codec import (
    BaseMismatchError,
    ExpiredError,
    Manifest,
    Release,
    RollbackError,
    SignatureError,
    SigningKey,
    UnknownKeyError,
    VerifyKey,
    WrongModelError,
    check_applicable,
    read_manifest,
)
from codec.manifest import SIGNATURE_DOMAIN

BASE = hashlib.sha256(b"base").digest()  # the base the conftest's releases name


@pytest.fixture(scope="module")
def manifest(build_release: Callable[..., Release]) -> Manifest:
    return build_release(version=5, base_version=4, base_sha256=BASE).manifest


def check(manifest: Manifest, **overrides: object) -> None:
    """check_applicable for a device that runs base version 4 of kws-tiny, one second after creation."""
    state: dict[str, object] = {
        "model": "kws-tiny", "current_version": 4, "current_sha256": BASE, "now": manifest.created + 1,
    }
    state.update(overrides)
    check_applicable(manifest, **state)  # type: ignore[arg-type]


def test_a_newer_release_for_the_running_base_is_applicable(manifest: Manifest) -> None:
    check(manifest)
    check(manifest, now=manifest.expires - 1)
    check(manifest, current_version=None)  # a device that never applied a release


@pytest.mark.parametrize("current", [5, 6, 2**63])
def test_an_equal_or_older_version_is_a_rollback(manifest: Manifest, current: int) -> None:
    with pytest.raises(RollbackError) as caught:
        check(manifest, current_version=current)
    assert caught.value.code == "old-version"


@pytest.mark.parametrize("current_sha256", [hashlib.sha256(b"other").digest(), None])
def test_a_delta_for_another_base_is_refused(manifest: Manifest, current_sha256: bytes | None) -> None:
    with pytest.raises(BaseMismatchError) as caught:
        check(manifest, current_sha256=current_sha256)
    assert caught.value.code == "wrong-base"


def test_a_full_release_applies_whatever_the_device_runs(build_release: Callable[..., Release]) -> None:
    full = build_release(full=True, base_version=None, base_sha256=None).manifest
    check(full, current_sha256=hashlib.sha256(b"anything").digest())
    check(full, current_sha256=None)
    with pytest.raises(RollbackError):  # but never an older one
        check(full, current_version=full.version)


@pytest.mark.parametrize("late", [0, 1, 10**9])
def test_an_expired_release_is_refused(manifest: Manifest, late: int) -> None:
    with pytest.raises(ExpiredError) as caught:
        check(manifest, now=manifest.expires + late)
    assert caught.value.code == "expired"


def test_a_release_for_another_model_is_refused(manifest: Manifest) -> None:
    with pytest.raises(WrongModelError) as caught:
        check(manifest, model="kws-large")
    assert caught.value.code == "wrong-model"


def test_a_manifest_signed_by_an_unknown_key_is_refused(foreign_key: SigningKey, trusted: dict[str, VerifyKey],
                                                       build_release: Callable[..., Release]) -> None:
    envelope = build_release(key=foreign_key).envelope
    for keys in (trusted, {}):
        with pytest.raises(UnknownKeyError) as caught:
            read_manifest(envelope, keys)
        assert caught.value.code == "unknown-key"


def test_a_foreign_signature_under_the_trusted_key_id_is_refused(
    manifest: Manifest, foreign_key: SigningKey, trusted: dict[str, VerifyKey]
) -> None:
    signed = manifest.canonical_bytes()  # names the trusted key ...
    envelope = msgpack.packb({"signed": signed, "signature": foreign_key.sign(SIGNATURE_DOMAIN + signed)})
    with pytest.raises(SignatureError) as caught:  # ... but the foreign key signed it
        read_manifest(envelope, trusted)
    assert type(caught.value) is SignatureError and caught.value.code == "bad-signature"


# ---------------------------------------------------------------------------------------------- cohort

DEVICES = [f"device-{i:05d}" for i in range(20_000)]


def cohort(manifest: Manifest, percent: float, salt: str) -> set[str]:
    rollout = dataclasses.replace(manifest, rollout_percent=percent, rollout_salt=salt)
    return {device for device in DEVICES if rollout.in_rollout(device)}


@pytest.mark.parametrize("percent", [1.0, 10.0, 33.3, 50.0, 90.0])
def test_a_rollout_includes_about_percent_of_devices(manifest: Manifest, percent: float) -> None:
    share = 100 * len(cohort(manifest, percent, "salt-a")) / len(DEVICES)
    assert abs(share - percent) <= 3.0


def test_rollout_membership_is_stable_for_a_device_and_salt(manifest: Manifest, build_release: Callable[..., Release],
                                                           trusted: dict[str, VerifyKey]) -> None:
    again = read_manifest(build_release(rollout_percent=30.0, rollout_salt="salt-a").envelope, trusted)
    assert cohort(manifest, 30.0, "salt-a") == {d for d in DEVICES if again.in_rollout(d)}


def test_another_salt_draws_an_independent_cohort(manifest: Manifest) -> None:
    first, second = cohort(manifest, 50.0, "salt-a"), cohort(manifest, 50.0, "salt-b")
    assert first != second
    assert abs(100 * len(first & second) / len(DEVICES) - 25.0) <= 3.0


def test_widening_a_rollout_keeps_the_devices_already_in_it(manifest: Manifest) -> None:
    narrow, wide = cohort(manifest, 20.0, "salt-a"), cohort(manifest, 60.0, "salt-a")
    assert narrow < wide


def test_zero_percent_includes_nobody_and_hundred_percent_everybody(manifest: Manifest) -> None:
    assert cohort(manifest, 0.0, "salt-a") == set()
    assert cohort(manifest, 100.0, "salt-a") == set(DEVICES)
