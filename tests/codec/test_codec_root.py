"""The trust root (codec.root) and manifests under it (codec.keys.ReleaseKeys): thresholds, model limits,
revocation, the walk from one version to the next, and domain separation from manifests."""

from __future__ import annotations

from dataclasses import replace

import msgpack
import pytest

from codec.errors import (
    FormatError,
    KeyNotAllowedError,
    RevokedKeyError,
    RootError,
    SignatureError,
    ThresholdError,
    UnknownKeyError,
)
from codec.keys import SigningKey, generate_signing_key
from codec.manifest import SIGNATURE_DOMAIN, read_manifest, sign_manifest
from codec.root import ROOT_DOMAIN, Root, read_root, sign_root, verify_first_root, verify_next_root


def _ids(keys: list[SigningKey]) -> dict:
    return {k.verify_key.key_id: k.verify_key for k in keys}


@pytest.fixture
def keys() -> dict[str, list[SigningKey]]:
    return {"root": [generate_signing_key() for _ in range(3)], "release": [generate_signing_key() for _ in range(3)]}


@pytest.fixture
def root(keys) -> Root:
    return Root(1, 1_800_000_000, 1_900_000_000, _ids(keys["root"]), 2, _ids(keys["release"][:1]))


def test_a_root_reads_back_as_signed_and_only_with_its_threshold(root, keys) -> None:
    envelope = sign_root(root, keys["root"][:2])
    assert verify_first_root(envelope) == root and read_root(envelope).signed == root.canonical_bytes()
    with pytest.raises(ThresholdError, match="1 of root v1's own"):
        verify_first_root(sign_root(root, keys["root"][:1]))
    forged = msgpack.unpackb(envelope)
    forged["signatures"] = {kid: bytes(64) for kid in forged["signatures"]}
    with pytest.raises(ThresholdError):
        verify_first_root(msgpack.packb(forged))


def test_the_next_root_needs_the_old_threshold_and_its_own(root, keys) -> None:
    new_keys = [generate_signing_key() for _ in range(2)]
    nxt = replace(root, version=2, root_keys=_ids(new_keys), root_threshold=2)
    with pytest.raises(ThresholdError, match="root v1's"):
        verify_next_root(sign_root(nxt, new_keys), root)  # only the new keys
    with pytest.raises(ThresholdError, match="its own|v2's own"):
        verify_next_root(sign_root(nxt, keys["root"][:2]), root)  # only the old keys
    assert verify_next_root(sign_root(nxt, keys["root"][:2] + new_keys), root).root == nxt
    with pytest.raises(RootError, match="does not follow"):
        verify_next_root(sign_root(replace(root, version=3), keys["root"]), root)
    with pytest.raises(RootError):
        verify_next_root(sign_root(root, keys["root"]), root)  # a replay of the current version


def test_root_and_manifest_signatures_cannot_stand_in_for_each_other(root, keys, build_release) -> None:
    envelope = sign_root(root, keys["root"][:2])
    signed = msgpack.unpackb(envelope)["signed"]
    as_manifest = keys["root"][0].sign(SIGNATURE_DOMAIN + signed)
    assert not keys["root"][0].verify_key.signs(as_manifest, ROOT_DOMAIN + signed)
    assert ROOT_DOMAIN != SIGNATURE_DOMAIN


def test_a_root_refuses_bad_fields(root, keys) -> None:
    with pytest.raises(FormatError, match="threshold"):
        replace(root, root_threshold=4)
    with pytest.raises(FormatError, match="expires"):
        replace(root, expires=root.created)
    fields = root.signed_fields()
    fields["root_keys"] = {"0000000000000000": keys["root"][0].verify_key.raw}
    signed = msgpack.packb(dict(sorted(fields.items())), use_bin_type=True)
    with pytest.raises(FormatError, match="has id"):
        read_root(msgpack.packb({"signed": signed, "signatures": {"x": bytes(64)}}))


def test_manifests_under_a_root_need_listed_keys_allowed_for_the_model_and_the_threshold(
    root, keys, build_release
) -> None:
    r1, r2, r3 = keys["release"]
    release = build_release(key=r1)
    trust = replace(root, release_keys=_ids([r1, r2, r3]), release_threshold=2).release_trust()
    with pytest.raises(ThresholdError, match="1 trusted key"):
        read_manifest(release.envelope, trust)
    cosigned = sign_manifest(release.manifest, r1, [r2])
    assert read_manifest(cosigned, trust) == release.manifest
    assert read_manifest(cosigned, {r1.verify_key.key_id: r1.verify_key}) == release.manifest, "simple mode"
    limited = replace(root, release_keys=_ids([r1]), release_models={r1.verify_key.key_id: frozenset({"kws"})})
    with pytest.raises(KeyNotAllowedError, match="model"):
        read_manifest(release.envelope, limited.release_trust())
    revoked = replace(root, release_keys=_ids([r2])).release_trust(revoked={r1.verify_key.key_id})
    with pytest.raises(RevokedKeyError):
        read_manifest(release.envelope, revoked)
    with pytest.raises(UnknownKeyError, match="trust add-key"):
        read_manifest(release.envelope, replace(root, release_keys=_ids([r2])).release_trust())
    with pytest.raises(SignatureError):
        bad = msgpack.unpackb(cosigned)
        bad["cosignatures"] = {r2.verify_key.key_id: bytes(64)}
        read_manifest(msgpack.packb(bad), trust)
