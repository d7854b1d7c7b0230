"""Policy for a verified manifest on one device (the checks that need the device's own state): the right
model and fleet, newer than the running version, not expired, and for a delta the right base."""

from __future__ import annotations

from codec.errors import BaseMismatchError, ExpiredError, RollbackError, WrongFleetError, WrongModelError
from codec.manifest import Manifest, iso_time


def check_applicable(
    manifest: Manifest, *, model: str, current_version: int | None, current_sha256: bytes | None, now: float,
    fleet: str | None = None,
) -> None:
    """Policy for a verified manifest on one device: right model and fleet, newer, right base, not expired."""
    check_fresh(manifest, model=model, current_version=current_version, now=now, fleet=fleet)
    if manifest.payload_kind == "delta" and manifest.base_sha256 != current_sha256:
        raise BaseMismatchError(
            f"release {manifest.version} applies to base version {manifest.base_version}, but this "
            "device's model file differs; publish a full release or an update for its version"
        )


def check_fresh(
    manifest: Manifest, *, model: str, current_version: int | None, now: float, fleet: str | None = None
) -> None:
    """The policy apart from the base (a device may reach the release through its index): right model,
    right fleet (a device configured with none takes any), newer than the running version, not expired."""
    if manifest.model != model:
        raise WrongModelError(f"the manifest is for model {manifest.model!r}, not {model!r}")
    check_fleet(manifest, fleet)
    if current_version is not None and manifest.version <= current_version:
        raise RollbackError(
            f"release {manifest.version} is not newer than the running version {current_version} "
            "(replayed or rolled-back release); publish a higher version"
        )
    if now >= manifest.expires:
        raise ExpiredError(f"release {manifest.version} expired at {iso_time(manifest.expires)} (the device's clock "
                           f"says {iso_time(now)})")


def check_fleet(manifest: Manifest, fleet: str | None) -> None:
    """Raise WrongFleetError unless ``manifest`` is for ``fleet`` (a device configured with none takes any)."""
    if fleet is not None and manifest.fleet != fleet:
        named = "names no fleet" if manifest.fleet is None else f"is for fleet {manifest.fleet!r}"
        raise WrongFleetError(f"release {manifest.version} {named}; this device is in fleet {fleet!r} (a release "
                              "signed for another broker, or published without --fleet)")
