"""A model's release history as a publisher leaves it on the broker: versions 1..N, each a delta of the one
before (random factors) with its full fallback and the catch-up index publishing would give it."""

from __future__ import annotations

from dataclasses import dataclass

from codec.apply import apply_to_bytes
from codec.keys import SigningKey
from codec.manifest import Manifest
from codec.release import Release
from publisher.release.build import update_release
from publisher.release.publish import catchup_index
from simulator.testbed.synthetic import DAY, make_full_release, random_update


@dataclass(frozen=True)
class Version:
    """One version: the model file devices run at it, its delta (None for version 1) and full fallback."""

    number: int
    model_file: bytes
    delta: Release | None = None
    full: Release | None = None

    @property
    def releases(self) -> list[Release]:
        """What publishing this version retains, the latest manifest's release last."""
        return [r for r in (self.full, self.delta) if r is not None]


def release_history(
    base: bytes, model: str, last: int, key: SigningKey, *, fallback: bool = True, seed: int = 20,
    **options: object,
) -> list[Version]:
    """Versions 1..``last`` of ``model`` from ``base``; ``options`` go to every release (chunk_size, ...)."""
    options.setdefault("lifetime_s", DAY)
    versions = [Version(1, base)]
    retained: list[tuple[Manifest, bytes]] = []
    for number in range(2, last + 1):
        update = random_update(versions[-1].model_file, seed + number)
        model_file, _ = apply_to_bytes(versions[-1].model_file, update.payload, update.decompressed_length)
        full = make_full_release(model_file, model, number, key, **options) if fallback else None
        delta = update_release(update, model=model, version=number, key=key,
                               index=catchup_index(retained, number, full), **options)
        versions.append(Version(number, model_file, delta, full))
        retained += [(r.manifest, r.envelope) for r in versions[-1].releases]
    return versions
