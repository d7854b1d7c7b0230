"""The demo: a release's life from the server's files to a device's exact, verified model file.

Today it walks through the codec (format, signing, chunks, strict verification, exact apply) on a
synthetic MLP. Training on real data, MQTT delivery, TFLite and simulated links join as they land.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import numpy as np

from codec import (
    ChunkError,
    IntegrityError,
    Reassembler,
    RollbackError,
    apply_payload,
    check_applicable,
    encode_payload,
    encode_weights,
    file_sha256,
    full_record,
    generate_signing_key,
    lowrank_record,
    make_release,
    read_manifest,
)
from codec.describe import describe_payload
from codec.keys import write_keypair

LAYERS = {"fc1": (256, 64), "fc2": (256, 256), "fc3": (10, 256)}
RANK = 4
NBIOT_BITS_PER_S = 20_000  # a conservative NB-IoT application throughput; the link simulator refines this


def _model(rng: np.random.Generator) -> dict[str, np.ndarray]:
    tensors = {}
    for name, shape in LAYERS.items():
        tensors[f"{name}.weight"] = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
        tensors[f"{name}.bias"] = np.zeros(shape[0], np.float32)
    return tensors


def _update(rng: np.random.Generator) -> list:
    return [
        lowrank_record(f"{name}.weight", shape, rng.standard_normal((shape[0], RANK)) * 0.05,
                       rng.standard_normal((RANK, shape[1])) * 0.05)
        for name, shape in LAYERS.items()
    ]


def _step(title: str) -> None:
    print(f"\n== {title}")


def run_demo(out: Path) -> int:
    """Run the walkthrough, writing keys and model files under ``out``."""
    rng = np.random.default_rng(7)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    key = generate_signing_key()
    write_keypair(out / "keys", key)
    trusted = {key.verify_key.key_id: key.verify_key}

    _step("1. The deployed model (a 64-256-256-10 MLP as an RCW file)")
    deployed = out / "device" / "model.rcw"
    deployed.parent.mkdir()
    deployed.write_bytes(encode_weights(_model(rng)))
    base_sha = file_sha256(deployed)
    full_payload, _ = encode_payload([full_record(deployed.read_bytes())])
    print(f"model file {deployed.stat().st_size:,} bytes; as a full release {len(full_payload):,} bytes")

    _step(f"2. The server's factorised update (rank {RANK} per layer, int8 codes)")
    payload, decompressed = encode_payload(_update(rng))
    print(describe_payload(payload))
    server_copy = out / "server-target.rcw"
    shutil.copyfile(deployed, server_copy)
    target_sha = apply_payload(server_copy, payload, decompressed)
    print(f"update {len(payload):,} bytes: {len(full_payload) / len(payload):.1f}x smaller than the full model")
    for label, size in (("full model", len(full_payload)), ("update", len(payload))):
        print(f"  {label:10} at {NBIOT_BITS_PER_S // 1000} kbit/s: {size * 8 / NBIOT_BITS_PER_S:6.1f} s of airtime")

    _step("3. The signed release: chunks first, manifest last")
    release = make_release(
        model="digits", version=2, payload=payload, decompressed_length=decompressed, target_sha256=target_sha,
        key=key, base_version=1, base_sha256=base_sha, chunk_size=1024,
    )
    print(f"{len(release.chunks)} chunks of up to 1,024 bytes; manifest {len(release.envelope):,} bytes, "
          f"signed by key {release.manifest.key_id}")

    _step("4. The device: verify the manifest, collect chunks in any order, refuse forgeries")
    manifest = read_manifest(release.envelope, trusted)
    check_applicable(manifest, model="digits", current_version=1, current_sha256=base_sha, now=time.time())
    forged = bytearray(release.chunks[0])
    forged[-1] ^= 1
    try:
        Reassembler(manifest).add(0, bytes(forged))
    except ChunkError as error:
        print(f"forged chunk refused: [{error.code}] {error}")
    reassembler = Reassembler(manifest)
    order = list(range(len(release.chunks))) * 2
    random.Random(3).shuffle(order)
    for index in order:
        reassembler.add(index, release.chunks[index])
    print(f"chunks arrived shuffled with duplicates; missing: {reassembler.missing() or 'none'}")

    _step("5. Exact apply on a copy, then the target check")
    staged = deployed.with_suffix(".staged")
    shutil.copyfile(deployed, staged)
    device_sha = apply_payload(staged, reassembler.payload(), manifest.decompressed_length)
    if device_sha != manifest.target_sha256:
        raise IntegrityError("the device did not reproduce the server's bytes; the release is refused")
    staged.replace(deployed)
    print(f"device sha256 {device_sha.hex()[:16]}… equals the manifest's target: the device runs exactly "
          "the model the server validated")
    try:
        check_applicable(manifest, model="digits", current_version=2, current_sha256=device_sha, now=time.time())
    except RollbackError as error:
        print(f"replaying the same release is refused: [{error.code}] {error}")

    _step("Coming next")
    print("training factorised updates on real digits data, MQTT delivery to device fleets, TFLite devices, "
          "and simulated NB-IoT/LTE-M fleets replace this walkthrough as they land.")
    print(f"\nfiles in {out}/")
    return 0
