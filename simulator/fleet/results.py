"""What a fleet run measured: per device, per strategy, and the cost of running it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from simulator.fleet.config import FleetConfig
from simulator.fleet.loop_lag import LagReport
from simulator.fleet.wire_bytes import WireBytes


@dataclass(frozen=True)
class DeviceResult:
    """One device's run: ``outcome`` is applied, failed (``error`` names the code) or timeout; ``wire`` splits
    ``bytes_down`` and ``bytes_up`` by category (simulator.fleet.wire_bytes)."""

    device_id: str
    link: str
    outcome: str
    completion_s: float | None
    bytes_down: int
    bytes_up: int
    reconnects: int
    lost_segments: int
    cuts: int
    error: str | None = None
    wire: WireBytes = WireBytes()


@dataclass(frozen=True)
class Usage:
    """CPU seconds and peak resident memory (MiB) of the simulator process and of Mosquitto."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    broker_cpu_s: float
    broker_peak_rss_mib: float


@dataclass(frozen=True)
class StrategyResult:
    name: str
    update_bytes: int
    release_bytes: int
    chunks: int
    devices: tuple[DeviceResult, ...]
    link_s: float
    usage: Usage
    #: The model id the devices followed.
    model: str = ""
    #: With FleetConfig.keep_devices: each device's model directory is devices_dir/<device id>/models.
    devices_dir: Path | None = None
    #: How far the event loop fell behind while the release went out (simulator.fleet.loop_lag).
    loop_lag: LagReport | None = None
    #: The release's payload P: the bytes of its chunks.
    payload_bytes: int = 0

    @property
    def times_valid(self) -> bool:
        """Whether completion times are link time: False when the loop was CPU-bound (they count CPU waits)."""
        return self.loop_lag is None or not self.loop_lag.cpu_bound

    @property
    def applied(self) -> int:
        return sum(d.outcome == "applied" for d in self.devices)

    @property
    def failed(self) -> int:
        return len(self.devices) - self.applied

    @property
    def wire_bytes_down(self) -> int:
        return sum(d.bytes_down for d in self.devices)

    @property
    def wire_bytes_up(self) -> int:
        return sum(d.bytes_up for d in self.devices)

    def completion_times(self) -> list[float]:
        return sorted(d.completion_s for d in self.devices if d.completion_s is not None)


@dataclass
class FleetResult:
    config: FleetConfig
    strategies: list[StrategyResult] = field(default_factory=list)
