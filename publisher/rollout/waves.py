"""A staged rollout's plan: its waves (a percent, a soak time, a device count each) and when to halt (after
AWS IoT Jobs' abort config: which failure codes count, the failure rate, a minimum of devices)."""

from __future__ import annotations

from dataclasses import dataclass

from publisher.errors import ConfigError

#: Device error codes that mean the release itself is bad (docs/format.md section 8): its payload, its
#: result or its canary. Refusals of trust, time, disk or path say nothing about the release.
DEFAULT_ABORT_CODES = frozenset({"bad-hash", "bad-format", "over-limit", "model-mismatch", "non-finite",
                                 "canary-failed"})


@dataclass(frozen=True)
class Wave:
    """Widen to ``percent``; move on once ``soak_s`` passed and ``min_devices`` of the cohort run the release
    (all of them, in a cohort that small)."""

    percent: float
    soak_s: float
    min_devices: int


@dataclass(frozen=True)
class AbortPolicy:
    """Halt once ``min_devices`` devices have finished with the release (run it or failed with one of
    ``codes``) and the failed share of them reaches ``threshold`` (0..1)."""

    codes: frozenset[str] = DEFAULT_ABORT_CODES
    threshold: float = 0.1
    min_devices: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0 or self.min_devices < 1:
            raise ConfigError(f"the abort threshold must be within 0..100 % and its minimum at least 1 device, got "
                              f"{self.threshold * 100:g} % and {self.min_devices}")


def parse_waves(text: str, soak_s: float, min_devices: int) -> tuple[Wave, ...]:
    """``1,10,50,100``: rising percents that end at 100, each wave with the same soak and device count."""
    try:
        percents = [float(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--waves {text!r}: give percents separated by commas, such as 1,10,50,100") from None
    if any(b <= a for a, b in zip(percents, percents[1:], strict=False)) or not 0 < percents[0] or percents[-1] != 100:
        raise ConfigError(f"--waves {text!r}: the percents must rise, start above 0 and end at 100")
    if soak_s < 0 or min_devices < 0:
        raise ConfigError("--soak and --min-devices cannot be negative")
    return tuple(Wave(percent, soak_s, min_devices) for percent in percents)
