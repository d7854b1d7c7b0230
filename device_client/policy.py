"""Whether a verified manifest is for this device, and whether and how to install it now: its model, its
fleet, its expiry, its version against the running one and an operator's rollback, the rollout cohort,
and the path to it (device_client.catchup). No state of its own (device_client.updater holds it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from codec.errors import BaseMismatchError, WrongModelError
from codec.manifest import Manifest
from codec.release_policy import check_fleet, check_fresh
from device_client.catchup import Step, describe_miss, plan_path
from device_client.errors import RolledBackError
from device_client.store import Installed

log = logging.getLogger("rankcast.device")


@dataclass(frozen=True)
class DevicePolicy:
    """One device's rules for one model; ``fleet`` None takes releases of any fleet."""

    model: str
    device_id: str
    fleet: str | None
    max_steps: int
    clock: Callable[[], float]

    def addressed(self, manifest: Manifest) -> bool:
        """Whether a verified manifest is meant for this device: its model and its fleet."""
        return manifest.model == self.model and (self.fleet is None or manifest.fleet == self.fleet)

    def follows(self, manifest: Manifest) -> bool:
        """Whether a verified manifest is one this device follows: meant for it and not expired."""
        return self.addressed(manifest) and self.clock() < manifest.expires

    def plan(self, manifest: Manifest, installed: Installed | None, rolled_back: int | None) -> list[Step] | None:
        """The steps from the running file to ``manifest``'s, or None if there is nothing to do (it runs
        already, or the device is outside the rollout); raises the refusal otherwise."""
        if manifest.model != self.model:
            raise WrongModelError(f"the manifest on {self.model}'s topic is for model {manifest.model!r}")
        check_fleet(manifest, self.fleet)  # before "nothing to do": another fleet's release is always reported
        if installed is not None and manifest.target_sha256 == installed.sha256:
            return None
        if not manifest.in_rollout(self.device_id):
            log.info("%s: release %d is not rolled out to this device (%.1f%%)", self.model, manifest.version,
                     manifest.rollout_percent)
            return None
        self.check(manifest, installed, rolled_back)
        running_sha256, running_version = (installed.sha256, installed.version) if installed else (None, None)
        steps = plan_path(manifest, running_sha256, running_version, self.max_steps)
        if steps is None:
            raise BaseMismatchError(describe_miss(manifest, running_sha256, running_version))
        return steps

    def check(self, manifest: Manifest, installed: Installed | None, rolled_back: int | None) -> None:
        """Raise the refusal of installing ``manifest`` now: rolled back by an operator, another model or
        fleet, not newer than the running version, expired."""
        if rolled_back is not None and manifest.version <= rolled_back:
            raise RolledBackError(
                f"release {manifest.version} was rolled back on this device (up to version {rolled_back}); "
                "publish a newer version"
            )
        check_fresh(manifest, model=self.model, current_version=installed.version if installed else None,
                    now=self.clock(), fleet=self.fleet)
