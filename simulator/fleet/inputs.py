"""What a simulated fleet receives: a base model file, an update for it, and the strategies to compare.

A strategy is one way of getting the fleet from the base file to the target file: ``full`` sends the
whole target file, ``factorised`` sends the .rcu update. Model files are RCW or .tflite, told apart by
their content; the device store and the codec's slot reader follow the file.

The update comes from `rankcast update build`, from training on a digits scenario
(simulator.bench.trained) or from the testbed's small synthetic model (no training).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from codec.errors import BaseMismatchError, IntegrityError
from codec.model_files import model_suffix
from codec.payload import encode_payload
from codec.quantise import full_record
from codec.update_file import UpdateFile, read_update_file, updated_model_file
from simulator.fleet.errors import FleetInputError

STRATEGIES = ("full", "factorised")


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
    try:
        return updated_model_file(base, update)
    except (BaseMismatchError, IntegrityError) as exc:
        raise FleetInputError(str(exc)) from None


def full_update(target: bytes) -> UpdateFile:
    """The whole target file as an update (what `rankcast publish --full` sends)."""
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
                            update.info, update.tensors)
    made = {"full": lambda: full_update(target), "factorised": lambda: update}
    return FleetInputs(base, target, tuple(Strategy(name, made[name]()) for name in names))


def load_update(base_file: Path, update_file: Path, names: tuple[str, ...] = STRATEGIES) -> FleetInputs:
    """Inputs from a deployed model file and a .rcu update built for it."""
    return fleet_inputs(Path(base_file).read_bytes(), read_update_file(update_file), names)
