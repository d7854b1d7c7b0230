"""Fuzzing the readers: mutated payloads, documents, manifest and trust root envelopes and RCW headers
either decode or raise a codec error (an UpdateError subclass), never anything else, and never hang.

The RNG is seeded (set RANKCAST_FUZZ_SEED to explore other seeds, RANKCAST_FUZZ_SCALE for more cases);
a failure names the seed, the case and the mutations, so it reproduces.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import msgpack
import numpy as np
import pytest

from codec import (
    Record,
    Release,
    SigningKey,
    UpdateError,
    VerifyKey,
    apply_payload,
    encode_payload,
    encode_weights,
    full_record,
    read_manifest,
    read_slots,
)
from codec.arrays import pack
from codec.keys import generate_signing_key
from codec.manifest import SIGNATURE_DOMAIN, read_manifest_unverified
from codec.payload import compress, encode_document
from codec.records import LowRankRecord
from codec.root import ROOT_DOMAIN, Root, read_root, sign_root, verify_first_root
from codec.seeded import SeededSigns

#: Hostile scales overflow float32 on purpose; apply refuses the result, numpy also warns.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:invalid value encountered:RuntimeWarning")

SEED = int(os.environ.get("RANKCAST_FUZZ_SEED", "20241125"))
SCALE = int(os.environ.get("RANKCAST_FUZZ_SCALE", "1"))  # more cases per target when exploring
CASES = {name: count * SCALE for name, count in
         {"payload": 700, "document": 1000, "compact": 1000, "envelope": 600, "resigned": 600, "rcw": 700,
          "root": 600, "root-resigned": 600}.items()}  # 5,800 in all
CASE_SECONDS = 5.0  # one case taking longer counts as a hang
TARGET_SECONDS = 45.0  # a bound on each target's whole run

_LENGTH_MARKERS = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}
_INTERESTING = [0, 1, 2, 7, 8, 15, 16, 127, 128, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


class Hang(Exception):
    """A single fuzz case ran past CASE_SECONDS."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise Hang in the main thread if the block runs longer than ``seconds``."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------------ mutations


def _edit_length(data: bytearray, rng: random.Random) -> str:
    """Rewrite the length field of a msgpack header (or a fixed-size one) with an interesting value."""
    candidates = [i for i, byte in enumerate(data) if byte in _LENGTH_MARKERS or 0x80 <= byte <= 0xBF]
    if not candidates:
        return "length:none"
    position = rng.choice(candidates)
    marker = data[position]
    if marker not in _LENGTH_MARKERS:  # fixmap, fixarray, fixstr: the length is in the low bits
        data[position] = (marker & 0xE0 if marker >= 0xA0 else marker & 0xF0) | rng.randrange(16)
        return f"length:fix@{position}"
    width = _LENGTH_MARKERS[marker]
    value = rng.choice(_INTERESTING + [rng.randrange(256**width)]) % 256**width
    data[position + 1 : position + 1 + width] = value.to_bytes(width, "big")
    return f"length:{value}@{position}"


def mutate(data: bytes, rng: random.Random, donor: bytes) -> tuple[bytes, list[str]]:
    """Apply one to three random mutations; returns the bytes and a description of each step."""
    out, steps = bytearray(data), []
    for _ in range(rng.randint(1, 3)):
        operation = rng.choice(["flip", "byte", "truncate", "insert", "delete", "splice", "length", "length"])
        position = rng.randrange(len(out) + 1)
        if operation == "flip" and out:
            position = min(position, len(out) - 1)
            out[position] ^= 1 << rng.randrange(8)
        elif operation == "byte" and out:
            position = min(position, len(out) - 1)
            out[position] = rng.randrange(256)
        elif operation == "truncate":
            del out[position:]
        elif operation == "insert":
            out[position:position] = rng.randbytes(rng.randint(1, 16))
        elif operation == "delete":
            del out[position : position + rng.randint(1, 32)]
        elif operation == "splice":
            start = rng.randrange(len(donor))
            out[position : position + rng.randint(0, 64)] = donor[start : start + rng.randint(1, 64)]
        elif operation == "length":
            steps.append(_edit_length(out, rng))
            continue
        steps.append(f"{operation}@{position}")
    return bytes(out), steps


def run_target(name: str, seeds: list[bytes], check: Callable[[bytes, random.Random], None]) -> None:
    """Feed CASES[name] mutations of ``seeds`` to ``check``; only UpdateError may escape it."""
    rng = random.Random(f"{SEED}:{name}")
    started = time.monotonic()
    outcomes = {"accepted": 0, "refused": 0}
    for case in range(CASES[name]):
        original = rng.choice(seeds)
        data, steps = mutate(original, rng, rng.choice(seeds))
        try:
            with deadline(CASE_SECONDS):
                check(data, rng)
            outcomes["accepted"] += 1
        except UpdateError:
            outcomes["refused"] += 1
        except BaseException as exc:  # anything else is the failure this test looks for
            pytest.fail(
                f"{name} case {case} (RANKCAST_FUZZ_SEED={SEED}) raised {type(exc).__name__}: {exc}\n"
                f"mutations {steps}\ninput ({len(data)} bytes) {data[:200].hex()}",
            )
    elapsed = time.monotonic() - started
    assert elapsed < TARGET_SECONDS * SCALE, f"{name}: {CASES[name]} cases took {elapsed:.1f} s"
    assert outcomes["refused"] > CASES[name] // 4, outcomes  # the mutations do reach the checks


# ------------------------------------------------------------------------------------------- targets

SHAPES = {"conv.weight": (6, 2, 3, 3), "fc.weight": (5, 7), "fc.bias": (5,), "norm.weight": (4, 3),
          "emb.weight": (8, 4), "lin.weight": (6, 10)}


def corpus(sample_records: list[Record]) -> list[Record]:
    """The sample records and a lowrank record of trit codes with a seeded sign factor (for lin.weight)."""
    rng = np.random.default_rng(5)
    seeded = LowRankRecord(
        "lin.weight", (6, 10), pack(rng.integers(-1, 2, (6, 3)), "trit"), pack(np.full(6, 0.01, np.float32), "f32"),
        SeededSigns((3, 10), 2**63 + 5), pack(np.full(10, 0.5, np.float32), "f32"),
    )
    return [*sample_records, seeded]


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    """An RCW model that the sample records fit."""
    rng = np.random.default_rng(3)
    return encode_weights({name: rng.normal(size=shape) for name, shape in SHAPES.items()})


def apply_to_copy(path: Path, model: bytes, payload: bytes, declared: int) -> None:
    """Decode and apply a payload to a fresh copy of the model file, as a device would."""
    path.write_bytes(model)
    apply_payload(path, payload, declared)


def test_mutated_payloads_decode_or_raise_codec_errors(
    sample_records: list[Record], model_bytes: bytes, tmp_path: Path
) -> None:
    encoded = [encode_payload(corpus(sample_records), level=19), encode_payload([full_record(model_bytes)], level=19),
               encode_payload(corpus(sample_records), level=19, layout=read_slots(model_bytes))]
    lengths = {payload: length for payload, length in encoded}

    def check(data: bytes, rng: random.Random) -> None:
        declared = lengths.get(data) or rng.choice(list(lengths.values()))
        if rng.random() < 0.2:
            declared = max(1, declared + rng.randint(-8, 8))
        apply_to_copy(tmp_path / "model.rcw", model_bytes, data, declared)

    run_target("payload", list(lengths), check)


def test_mutated_documents_decode_and_apply_or_raise_codec_errors(
    sample_records: list[Record], model_bytes: bytes, tmp_path: Path
) -> None:
    documents = [encode_document(corpus(sample_records)), encode_document([full_record(b"model")])]

    def check(data: bytes, rng: random.Random) -> None:
        apply_to_copy(tmp_path / "model.rcw", model_bytes, compress(data, level=1), len(data))

    run_target("document", documents, check)


def test_mutated_format_2_documents_decode_and_apply_or_raise_codec_errors(
    sample_records: list[Record], model_bytes: bytes, tmp_path: Path
) -> None:
    layout = read_slots(model_bytes)
    records = corpus(sample_records)
    quarter = pack(np.full(1, 0.25, np.float32), "f32")
    seeded_u = replace(records[0], u=SeededSigns(records[0].u.shape, 99), u_scale=quarter)
    # Two seeded records whose seeds do not follow each other: the second one's head carries its seed.
    documents = [encode_document(records, layout), encode_document([seeded_u, *records[1:]], layout)]

    def check(data: bytes, rng: random.Random) -> None:
        apply_to_copy(tmp_path / "model.rcw", model_bytes, compress(data, level=1), len(data))

    run_target("compact", documents, check)


def test_mutated_manifest_envelopes_raise_codec_errors(
    build_release: Callable[..., Release], trusted: dict[str, VerifyKey]
) -> None:
    releases = [build_release(), build_release(full=True, base_version=None, base_sha256=None)]
    genuine = [release.manifest for release in releases]

    def check(data: bytes, rng: random.Random) -> None:
        read_manifest_unverified(data)
        assert read_manifest(data, trusted) in genuine, "an altered envelope read as a manifest nobody signed"

    run_target("envelope", [release.envelope for release in releases], check)


def test_mutated_but_validly_signed_manifests_are_validated_strictly(
    build_release: Callable[..., Release], signing_key: SigningKey, trusted: dict[str, VerifyKey]
) -> None:
    """The signature holds here, so these cases reach the field validation behind it."""
    signed = [msgpack.unpackb(build_release(version=v).envelope)["signed"] for v in (1, 2**40)]

    def check(data: bytes, rng: random.Random) -> None:
        envelope = msgpack.packb({"signed": data, "signature": signing_key.sign(SIGNATURE_DOMAIN + data)})
        read_manifest(envelope, trusted)

    run_target("resigned", signed, check)


def _roots() -> tuple[list[bytes], list[SigningKey]]:
    """Two genuine root envelopes (v1 of three root keys, and v2 limiting a release key to two models)."""
    keys = [generate_signing_key() for _ in range(3)]
    releases = [generate_signing_key() for _ in range(2)]
    first = Root(1, 1_800_000_000, 1_900_000_000, {k.verify_key.key_id: k.verify_key for k in keys}, 2,
                 {releases[0].verify_key.key_id: releases[0].verify_key})
    second = replace(first, version=2, release_keys={r.verify_key.key_id: r.verify_key for r in releases},
                     release_models={releases[1].verify_key.key_id: frozenset({"digits", "kws"})})
    return [sign_root(first, keys[:2]), sign_root(second, keys)], keys


def test_mutated_root_envelopes_raise_codec_errors() -> None:
    envelopes, _ = _roots()
    genuine = [read_root(envelope).root for envelope in envelopes]

    def check(data: bytes, rng: random.Random) -> None:
        read_root(data)
        assert verify_first_root(data) in genuine, "an altered envelope read as a root nobody signed"

    run_target("root", envelopes, check)


def test_mutated_but_validly_signed_roots_are_validated_strictly() -> None:
    """Signed again by every root key, so these cases reach the field validation behind the signatures."""
    envelopes, keys = _roots()
    signed = [msgpack.unpackb(envelope)["signed"] for envelope in envelopes]

    def check(data: bytes, rng: random.Random) -> None:
        signatures = {k.verify_key.key_id: k.sign(ROOT_DOMAIN + data) for k in keys}
        verify_first_root(msgpack.packb({"signed": data, "signatures": signatures}))

    run_target("root-resigned", signed, check)


def test_mutated_rcw_files_raise_codec_errors(model_bytes: bytes) -> None:
    small = encode_weights({"a": np.ones(3), "b": np.zeros((2, 2))})

    def check(data: bytes, rng: random.Random) -> None:
        if rng.random() < 0.3 and len(data) >= 8:  # edit the uint32 header length itself
            length = rng.choice(_INTERESTING + [rng.randrange(2**32)])
            data = data[:4] + length.to_bytes(4, "little") + data[8:]
        for slot in read_slots(data).values():
            assert slot.offset + slot.nbytes <= len(data)
            slot.view(data)

    run_target("rcw", [model_bytes, small], check)
