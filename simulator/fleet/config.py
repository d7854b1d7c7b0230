"""How a simulated fleet runs: its size, links, clock, limits and seed."""

from __future__ import annotations

from dataclasses import dataclass

from codec.limits import DEFAULT_CHUNK_SIZE
from simulator.fleet.errors import FleetConfigError
from simulator.fleet.links import LinkMix


@dataclass(frozen=True)
class FleetConfig:
    """How the fleet runs. Times are link time unless named ``wall``."""

    devices: int
    links: LinkMix
    time_scale: float = 1.0
    timeout_s: float = 3600.0
    connect_wait_s: float = 600.0
    wall_limit_s: float = 1800.0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    chunk_window: int = 8
    seed: int = 0
    keep_devices: bool = False

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise FleetConfigError(f"a fleet needs at least one device, got {self.devices}")
        if not self.links.parts:
            raise FleetConfigError("a fleet needs at least one link profile (--link)")
        if not self.time_scale > 0 or not self.timeout_s > 0:
            raise FleetConfigError(f"the time scale and the timeout must be positive, got {self.time_scale} and "
                                   f"{self.timeout_s}")
