"""Link profiles: what a device's radio link does to bytes, as figures with their sources.

A profile gives per-direction rates in bytes per second, a one-way latency with jitter, a residual
segment loss rate (what TCP sees after the radio's own retransmissions) and outages. The built-in
profiles are listed in docs/simulator.md with the document each figure comes from; user profiles come
from a TOML file:

    [profiles.rural-nbiot]
    base = "nbiot"                 # optional: start from a built-in (or earlier) profile
    down_bytes_per_s = 1500
    up_bytes_per_s = 1000
    latency_ms = 1500
    jitter_ms = 500
    loss = 0.02                    # fraction of TCP segments lost (each costs one retransmission timeout)
    outage_rate_per_hour = 4       # random outages: mean count per hour of link time ...
    outage_duration_s = 30         # ... and their mean length
    outages = [{at_s = 5, duration_s = 10}]   # scheduled outages, from the start of the run
    description = "NB-IoT at the cell edge"
    source = "our field measurements"
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from simulator.fleet.errors import LinkProfileError


@dataclass(frozen=True)
class Outage:
    """A scheduled cut: the link is down from ``at_s`` for ``duration_s`` seconds of link time."""

    at_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.at_s) and self.at_s >= 0 and math.isfinite(self.duration_s)
                and self.duration_s > 0):
            raise LinkProfileError(f"an outage needs at_s >= 0 and duration_s > 0, got {self}")


@dataclass(frozen=True)
class LinkProfile:
    """One kind of link. Rates in bytes/s per direction (down: broker to device), times in seconds."""

    name: str
    down_bytes_per_s: float
    up_bytes_per_s: float
    latency_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    outage_rate_per_hour: float = 0.0
    outage_duration_s: float = 0.0
    outages: tuple[Outage, ...] = ()
    description: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        positive = {"down_bytes_per_s": self.down_bytes_per_s, "up_bytes_per_s": self.up_bytes_per_s}
        non_negative = {
            "latency": self.latency_s, "jitter": self.jitter_s, "outage_rate_per_hour": self.outage_rate_per_hour,
            "outage_duration_s": self.outage_duration_s,
        }
        for key, value in positive.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise LinkProfileError(f"profile {self.name!r}: {key} must be a positive number, got {value!r}")
        for key, value in non_negative.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise LinkProfileError(f"profile {self.name!r}: {key} must be a number >= 0, got {value!r}")
        if not (isinstance(self.loss, int | float) and 0 <= self.loss < 0.5):
            raise LinkProfileError(f"profile {self.name!r}: loss must be a fraction in [0, 0.5), got {self.loss!r}")
        if self.outage_rate_per_hour > 0 and self.outage_duration_s <= 0:
            raise LinkProfileError(f"profile {self.name!r}: random outages need outage_duration_s > 0")

    @property
    def rtt_s(self) -> float:
        return 2 * self.latency_s

    @property
    def rto_s(self) -> float:
        """The stall of one lost segment: RFC 6298's RTO = SRTT + 4·RTTVAR, at least Linux's 200 ms."""
        return max(MIN_RTO_S, self.rtt_s + 4 * 2 * self.jitter_s)

    def summary(self) -> str:
        """One line: rates in kbit/s, RTT, loss, outages."""
        outages = []
        if self.outage_rate_per_hour:
            outages.append(f"{self.outage_rate_per_hour:g}/h x {self.outage_duration_s:g} s")
        if self.outages:
            outages.append(f"{len(self.outages)} scheduled")
        return (
            f"down {_kbit(self.down_bytes_per_s)}  up {_kbit(self.up_bytes_per_s)}  "
            f"RTT {self.rtt_s * 1000:.0f} ms ±{2 * self.jitter_s * 1000:.0f}  loss {self.loss * 100:g}%  "
            f"outages {', '.join(outages) or 'none'}"
        )


#: Linux's minimum retransmission timeout (RFC 6298 recommends 1 s; Linux uses 200 ms).
MIN_RTO_S = 0.2


def _kbit(bytes_per_s: float) -> str:
    kbit = bytes_per_s * 8 / 1000
    return f"{kbit / 1000:.3g} Mbit/s" if kbit >= 1000 else f"{kbit:.3g} kbit/s"


def _kbps(kbit_per_s: float) -> float:
    return kbit_per_s * 1000 / 8


#: The built-in profiles. Rates are the bearer figures of the cited documents (see docs/simulator.md for
#: the derivation); latencies are round figures inside the ranges they give; jitter and loss are stated
#: modelling assumptions (residual loss after the radio's own ARQ/HARQ), not measured values.
BUILTIN: dict[str, LinkProfile] = {
    p.name: p
    for p in (
        LinkProfile(
            "nbiot", _kbps(20), _kbps(16), latency_s=0.8, jitter_s=0.3, loss=0.01,
            description="NB-IoT (LTE Cat-NB1, Release 13), in-band, good coverage",
            source="3GPP TS 36.306 (Cat NB1 peak ~26 kbit/s down, 16.9 kbit/s single-tone up); "
            "GSMA Mobile IoT (LPWA) deployment guide: latency 1.6-10 s",
        ),
        LinkProfile(
            "ltem", _kbps(300), _kbps(375), latency_s=0.05, jitter_s=0.02, loss=0.005,
            description="LTE-M (LTE Cat-M1, Release 13), half-duplex FDD",
            source="3GPP TS 36.306 (Cat M1); HD-FDD throughput ~300 kbit/s down, ~375 kbit/s up per "
            "GSMA LTE-M deployment guide; radio latency 10-15 ms (GSMA), core network added",
        ),
        LinkProfile(
            "gprs", _kbps(53.6), _kbps(13.4), latency_s=0.35, jitter_s=0.1, loss=0.01,
            description="GPRS, CS-2, multislot 4 down + 1 up",
            source="3GPP TS 45.003 / 43.064 (CS-2: 13.4 kbit/s per timeslot); TS 45.002 multislot classes; "
            "RTT 0.6-1 s: Chakravorty & Pratt, 'Performance issues with GPRS', JCN 2002",
        ),
        LinkProfile(
            "edge", _kbps(179.2), _kbps(44.8), latency_s=0.15, jitter_s=0.05, loss=0.01,
            description="EDGE (EGPRS), MCS-7, 4 down + 1 up timeslots",
            source="3GPP TS 43.064 (MCS-7: 44.8 kbit/s per timeslot); RTT of a few hundred ms (3GPP TR 45.912)",
        ),
        LinkProfile(
            "3g", _kbps(384), _kbps(64), latency_s=0.1, jitter_s=0.03, loss=0.005,
            description="UMTS Release 99 packet bearer, 384 kbit/s down, 64 kbit/s up",
            source="3GPP TS 34.108 reference radio bearers (PS 64/384 kbit/s); RTT ~200 ms for R99 DCH",
        ),
        LinkProfile(
            "wifi", _kbps(20_000), _kbps(20_000), latency_s=0.002, jitter_s=0.001, loss=0.001,
            description="Wi-Fi 802.11n, one stream, 20 MHz, TCP goodput",
            source="IEEE 802.11n-2009 MCS 7: 65/72.2 Mbit/s PHY; TCP goodput taken as ~30% of it",
        ),
        LinkProfile(
            "geo", _kbps(400), _kbps(200), latency_s=0.3, jitter_s=0.03, loss=0.005,
            description="GEO satellite terminal (Inmarsat BGAN class)",
            source="Inmarsat BGAN standard IP up to 492 kbit/s; 35,786 km orbit: ~240 ms ground-satellite-"
            "ground each way (ITU-R S.1525), RTT ~600 ms with processing",
        ),
    )
}

_TOML_KEYS = {
    "base", "down_bytes_per_s", "up_bytes_per_s", "latency_ms", "jitter_ms", "loss", "outage_rate_per_hour",
    "outage_duration_s", "outages", "description", "source",
}


def load_profiles(path: Path, known: dict[str, LinkProfile] | None = None) -> dict[str, LinkProfile]:
    """The built-in profiles plus those of the TOML file at ``path`` (which may redefine a built-in)."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise LinkProfileError(f"{path} is not valid TOML: {exc}") from None
    return parse_profiles(document, dict(BUILTIN if known is None else known), str(path))


def parse_profiles(document: dict, known: dict[str, LinkProfile], where: str = "profiles") -> dict[str, LinkProfile]:
    """Add the ``[profiles.NAME]`` tables of ``document`` to ``known`` (returned)."""
    unknown = set(document) - {"profiles"}
    tables = document.get("profiles", {})
    if unknown or not isinstance(tables, dict):
        raise LinkProfileError(f"{where}: expected only [profiles.NAME] tables, found {sorted(unknown) or tables!r}")
    for name, table in tables.items():
        known[name] = _profile(name, table, known, where)
    return known


def _profile(name: str, table: object, known: dict[str, LinkProfile], where: str) -> LinkProfile:
    if not isinstance(table, dict):
        raise LinkProfileError(f"{where}: [profiles.{name}] must be a table")
    extra = set(table) - _TOML_KEYS
    if extra:
        raise LinkProfileError(
            f"{where}: [profiles.{name}] has unknown key(s) {', '.join(sorted(extra))}; "
            f"allowed: {', '.join(sorted(_TOML_KEYS))}"
        )
    base_name = table.get("base")
    if base_name is not None and base_name not in known:
        raise LinkProfileError(f"{where}: [profiles.{name}] base {base_name!r} is not a known profile")
    if base_name is None and not {"down_bytes_per_s", "up_bytes_per_s"} <= set(table):
        raise LinkProfileError(f"{where}: [profiles.{name}] needs down_bytes_per_s and up_bytes_per_s (or a base)")
    values: dict = {}
    for key in ("down_bytes_per_s", "up_bytes_per_s", "loss", "outage_rate_per_hour", "outage_duration_s"):
        if key in table:
            values[key] = _number(table[key], name, key, where)
    for key in ("latency_ms", "jitter_ms"):
        if key in table:
            values[key.replace("_ms", "_s")] = _number(table[key], name, key, where) / 1000
    for key in ("description", "source"):
        if key in table:
            if not isinstance(table[key], str):
                raise LinkProfileError(f"{where}: [profiles.{name}] {key} must be a string")
            values[key] = table[key]
    if "outages" in table:
        values["outages"] = _outages(table["outages"], name, where)
    template = known[base_name] if base_name else LinkProfile(name, 1, 1)
    if base_name and "source" not in values:
        values["source"] = f"derived from {base_name}"
    try:
        return replace(template, name=name, **values)
    except TypeError as exc:
        raise LinkProfileError(f"{where}: [profiles.{name}]: {exc}") from None


def _number(value: object, name: str, key: str, where: str) -> float:
    if type(value) not in (int, float):
        raise LinkProfileError(f"{where}: [profiles.{name}] {key} must be a number, got {value!r}")
    return float(value)


def _outages(value: object, name: str, where: str) -> tuple[Outage, ...]:
    if not isinstance(value, list):
        raise LinkProfileError(f"{where}: [profiles.{name}] outages must be a list of {{at_s, duration_s}}")
    result = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"at_s", "duration_s"}:
            raise LinkProfileError(f"{where}: [profiles.{name}] each outage is {{at_s = N, duration_s = N}}")
        result.append(Outage(_number(item["at_s"], name, "at_s", where),
                             _number(item["duration_s"], name, "duration_s", where)))
    return tuple(sorted(result, key=lambda o: o.at_s))


@dataclass(frozen=True)
class LinkMix:
    """Profiles and the fraction of the fleet on each (fractions sum to 1)."""

    parts: tuple[tuple[LinkProfile, float], ...] = field(default_factory=tuple)

    def assign(self, devices: int) -> list[LinkProfile]:
        """A profile per device: largest-remainder rounding of the fractions, in the order given."""
        exact = [fraction * devices for _, fraction in self.parts]
        counts = [math.floor(x) for x in exact]
        by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
        for i in by_remainder[: devices - sum(counts)]:
            counts[i] += 1
        return [profile for (profile, _), count in zip(self.parts, counts, strict=True) for _ in range(count)]


def parse_link_mix(spec: str, profiles: dict[str, LinkProfile] | None = None) -> LinkMix:
    """``PROFILE[:FRACTION][,...]``: profiles without a fraction share what the others leave, equally."""
    profiles = BUILTIN if profiles is None else profiles
    names: list[str] = []
    fractions: list[float | None] = []
    for part in (p.strip() for p in spec.split(",")):
        name, _, fraction = part.partition(":")
        if name not in profiles:
            raise LinkProfileError(f"unknown link profile {name!r}; known: {', '.join(profiles)}")
        if name in names:
            raise LinkProfileError(f"link profile {name!r} is named twice in {spec!r}")
        names.append(name)
        try:
            fractions.append(float(fraction) if fraction else None)
        except ValueError:
            raise LinkProfileError(f"{part!r}: the fraction must be a number such as 0.25") from None
    given = sum(f for f in fractions if f is not None)
    if any(f is not None and not 0 < f <= 1 for f in fractions) or given > 1 + 1e-9:
        raise LinkProfileError(f"{spec!r}: fractions must be in (0, 1] and sum to at most 1")
    open_count = fractions.count(None)
    if open_count == 0 and abs(given - 1) > 1e-6:
        raise LinkProfileError(f"{spec!r}: fractions sum to {given:g}; they must sum to 1")
    if open_count and given >= 1 - 1e-9:
        raise LinkProfileError(f"{spec!r}: nothing is left for the profiles without a fraction")
    share = (1 - given) / open_count if open_count else 0.0
    return LinkMix(tuple((profiles[n], share if f is None else f) for n, f in zip(names, fractions, strict=True)))


def profile_table(profiles: dict[str, LinkProfile]) -> str:
    """What `rankcast simulate --list-links` prints."""
    lines = []
    for profile in profiles.values():
        lines.append(f"{profile.name:<8} {profile.summary()}")
        if profile.description:
            lines.append(f"{'':<8} {profile.description}")
        if profile.source:
            lines.append(f"{'':<8} source: {profile.source}")
    return "\n".join(lines)
