"""What a simulated fleet receives: a base model file, an update for it, and the strategies to compare.

A strategy is one way of getting the fleet from the base file to the target file: ``full`` sends the
whole target file, ``factorised`` sends the .rcu update. Model files are RCW or .tflite, told apart by
their content; the device store and the codec's slot reader follow the file.

Inputs come from an update built by `rankcast update build` (``load_update``), from training on a
digits scenario (``build_scenario_update``), or from a small synthetic model (``synthetic_update``,
no training, for tests and the scale benchmark).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.apply import apply_payload
from codec.model_files import model_suffix
from codec.payload import encode_payload
from codec.quantise import lowrank_record
from codec.update_file import UpdateFile, read_update_file, write_update_file
from codec.weights import write_weights

STRATEGIES = ("full", "factorised")


class FleetInputError(ValueError):
    """The model files or the update cannot make a fleet run; the message says what to fix."""

    code = "bad-fleet-input"


@dataclass(frozen=True)
class Strategy:
    """One way to ship the target: ``update`` is published as the release (a full or a delta payload)."""

    name: str
    update: UpdateFile

    @property
    def update_bytes(self) -> int:
        return len(self.update.payload)


@dataclass(frozen=True)
class FleetInputs:
    """The file every device runs at the start, and the strategies that each take it to ``target``."""

    base: bytes
    target: bytes
    strategies: tuple[Strategy, ...]

    @property
    def suffix(self) -> str:
        return model_suffix(self.base)


def apply_update(base: bytes, update: UpdateFile) -> bytes:
    """The model file a device has after applying ``update`` to ``base`` (checked against the target)."""
    if update.base_sha256 is not None and update.payload_kind == "delta":
        if hashlib.sha256(base).digest() != update.base_sha256:
            raise FleetInputError("the update was built for a different base model file (base sha256 differs)")
    with tempfile.TemporaryDirectory(prefix="rankcast-sim-") as tmp:
        path = Path(tmp) / f"model{model_suffix(base)}"
        path.write_bytes(base if update.payload_kind == "delta" else b"")
        digest = apply_payload(path, update.payload, update.decompressed_length)
        target = path.read_bytes()
    if update.target_sha256 is not None and digest != update.target_sha256:
        raise FleetInputError("applying the update does not produce the target sha256 it names")
    return target


def full_update(target: bytes) -> UpdateFile:
    """The whole target file as an update (what `rankcast publish --full` sends)."""
    from codec.quantise import full_record

    payload, length = encode_payload([full_record(target)])
    return UpdateFile(payload, length, "full", None, hashlib.sha256(target).digest())


def fleet_inputs(base: bytes, update: UpdateFile, names: tuple[str, ...] = STRATEGIES) -> FleetInputs:
    """The strategies ``names`` (of STRATEGIES) for taking ``base`` to what ``update`` produces."""
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise FleetInputError(f"unknown strategy {unknown or names}; choose from {', '.join(STRATEGIES)}")
    target = apply_update(base, update)
    if update.target_sha256 is None:
        update = UpdateFile(update.payload, update.decompressed_length, update.payload_kind,
                            update.base_sha256 or hashlib.sha256(base).digest(), hashlib.sha256(target).digest(),
                            update.info)
    made = {"full": lambda: full_update(target), "factorised": lambda: update}
    return FleetInputs(base, target, tuple(Strategy(name, made[name]()) for name in names))


def load_update(base_file: Path, update_file: Path, names: tuple[str, ...] = STRATEGIES) -> FleetInputs:
    """Inputs from a deployed model file and a .rcu update built for it."""
    return fleet_inputs(Path(base_file).read_bytes(), read_update_file(update_file), names)


def synthetic_update(workdir: Path, width: int = 64, rank: int = 4, seed: int = 0) -> tuple[Path, Path, Path]:
    """A small RCW model (a width×width layer and a 10×width head) and a rank-``rank`` update of it.

    Returns (base file, .rcu update, target file) written under ``workdir``. No training: for tests
    and benchmarks that need a release of a realistic shape quickly.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base, target, rcu = workdir / "base.rcw", workdir / "target.rcw", workdir / "update.rcu"
    write_weights(base, {
        "fc1.weight": rng.standard_normal((width, width)).astype(np.float32) / np.sqrt(width),
        "fc1.bias": np.zeros(width, np.float32),
        "fc2.weight": rng.standard_normal((10, width)).astype(np.float32) / np.sqrt(width),
        "fc2.bias": np.zeros(10, np.float32),
    })
    record = lowrank_record("fc1.weight", (width, width), rng.normal(size=(width, rank)) * 0.01,
                            rng.normal(size=(rank, width)))
    payload, length = encode_payload([record])
    shutil.copy(base, target)
    target_sha = apply_payload(target, payload, length)
    base_sha = hashlib.sha256(base.read_bytes()).digest()
    write_update_file(rcu, UpdateFile(payload, length, "delta", base_sha, target_sha, {"kind": "synthetic"}))
    return base, rcu, target


def build_scenario_update(
    name: str, workdir: Path, epochs: int = 12, rank: int = 8, tflite: bool = False
) -> tuple[Path, Path, Path]:
    """Train a digits MLP on scenario ``name``'s base data, then a factorised update on its update data.

    Uses simulator.update_scenarios (data, models) and the publisher's factorised training. Returns
    (base file, .rcu update, target file) under ``workdir``: RCW files, or with ``tflite`` float32 .tflite
    files (publisher.tflite_export) whose weight buffers the update patches in place. The .rcu's info
    holds the test accuracy of the base model and of the exact model the devices rebuild.
    """
    from publisher.factorised import factorise, uniform_ranks
    from publisher.fit import fit
    from publisher.reconstruct import model_file, updated_model
    from publisher.training import TrainConfig, accuracy, train
    from publisher.update import DEFAULT_LR
    from simulator.update_scenarios import build_model, scenario

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = scenario(name)
    model = build_model("mlp", seed=0)
    train(model, model.parameters(), data.base.x, data.base.y, TrainConfig(epochs=epochs))
    rcw = model_file(model.state_dict())
    delta_set = factorise(model, uniform_ranks(model, rank))
    fit(delta_set, data.update.x, data.update.y, TrainConfig(epochs=epochs, lr=DEFAULT_LR))
    payload, length = delta_set.encode()
    info = {
        "scenario": name, "rank": rank, "epochs": epochs,
        "base_accuracy": accuracy(model, data.test.x, data.test.y),
        "accuracy": accuracy(updated_model(model, rcw, payload, length), data.test.x, data.test.y),
    }
    if tflite:
        from publisher.tflite_export import export_tflite_bytes

        base = export_tflite_bytes(model, (1, *data.test.x.shape[1:]))[0]
    else:
        base = rcw
    update = UpdateFile(payload, length, "delta", hashlib.sha256(base).digest(), None, info)
    target = apply_update(base, update)
    update = UpdateFile(payload, length, "delta", update.base_sha256, hashlib.sha256(target).digest(), info)
    suffix = model_suffix(base)
    paths = workdir / f"{name}-base{suffix}", workdir / f"{name}-update.rcu", workdir / f"{name}-target{suffix}"
    paths[0].write_bytes(base)
    write_update_file(paths[1], update)
    paths[2].write_bytes(target)
    return paths
