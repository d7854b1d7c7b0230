"""device.toml: who the device is, where its models live, whom it trusts, and how it reaches the broker.

    device_id = "pump-0042"
    model_dir = "/var/lib/rankcast/models"
    trusted_keys = ["/etc/rankcast/signing.pub"]   # simple mode; or, instead:
    # trust_root = "/etc/rankcast/root.1"          # a trust root that can rotate keys (rankcast trust init)
    models = ["digits"]
    fleet = "production"             # optional: refuse releases signed for another fleet (publish --fleet)

    [broker]
    url = "mqtts://broker.example.com:8883"
    username = "pump-0042"          # optional; must equal device_id
    password_file = "/etc/rankcast/pump-0042.password"
    cafile = "/etc/rankcast/ca.crt"  # optional: the system CAs otherwise
    # prefix = "rankcast"  keepalive = 60

    [client]                         # optional tuning
    # chunk_window = 8  backoff_initial = 0.5  backoff_max = 60  status_interval = 30  connect_timeout = 10
    # max_chain = 8  (deltas applied in a row to catch up before the full release is taken instead)
    # stall_after = 120  (seconds without a chunk before a download re-subscribes; at least 10 chunk times)
    # heartbeat = 600  (most seconds between two statuses while online)
    # manifest_wait = 60  (seconds after subscribing before a followed manifest that did not come is reported)

Relative paths are relative to the directory of the config file. docs/device.md documents every key,
its default and an example (its tests parse that example and check its table against these classes).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from codec.errors import FormatError
from codec.manifest import validate_id
from codec.topics import DEFAULT_PREFIX, BrokerUrl, read_password_file
from device_client.errors import ConfigError


@dataclass(frozen=True)
class BrokerSettings:
    """The [broker] table."""

    url: BrokerUrl
    username: str | None = None
    password_file: Path | None = None
    cafile: Path | None = None
    prefix: str = DEFAULT_PREFIX
    keepalive: int = 60

    def password(self) -> str | None:
        """The password file's first line, or None without a password file."""
        return read_password_file(self.password_file)


@dataclass(frozen=True)
class ClientSettings:
    """The optional [client] table: download window, catch-up chain length, stall deadline, reconnect
    backoff and status pacing (seconds)."""

    chunk_window: int = 8
    max_chain: int = 8
    stall_after: float = 120.0
    heartbeat: float = 600.0
    manifest_wait: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 60.0
    status_interval: float = 30.0
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        counts = (self.chunk_window, self.max_chain)
        times = (self.backoff_initial, self.status_interval, self.connect_timeout, self.stall_after, self.heartbeat,
                 self.manifest_wait)
        if min(counts) < 1 or min(times) <= 0:
            raise ConfigError("[client] values must be positive")
        if self.backoff_max < self.backoff_initial:
            raise ConfigError("[client] backoff_max must be at least backoff_initial")


@dataclass(frozen=True)
class DeviceConfig:
    """A validated device.toml."""

    device_id: str
    model_dir: Path
    trusted_keys: tuple[Path, ...]
    models: tuple[str, ...]
    broker: BrokerSettings
    client: ClientSettings = field(default_factory=ClientSettings)
    #: The fleet whose releases the device takes (a manifest naming another, or none, is refused:
    #: wrong-fleet); None takes releases of any fleet.
    fleet: str | None = None
    #: The trust root the device was provisioned with (device_client.trust); trusted_keys is empty then.
    trust_root: Path | None = None


def load_config(path: Path) -> DeviceConfig:
    """Read and validate ``path``; raises ConfigError naming the offending key."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, Path(path).resolve().parent)


def parse_config(data: dict, base: Path) -> DeviceConfig:
    """Validate the TOML document ``data``; relative paths are taken relative to ``base``."""
    _check_keys(data, {"device_id", "model_dir", "trusted_keys", "trust_root", "models", "fleet", "broker", "client"},
                "device.toml")
    device_id = _id(_get(data, "device_id", str), "device_id")
    models = tuple(_id(_str(m, "models"), "models") for m in _get(data, "models", list))
    if not models or len(set(models)) != len(models):
        raise ConfigError("models must list at least one model id, each once")
    keys, root = _trust(data, base)
    return DeviceConfig(
        device_id=device_id,
        model_dir=base / _get(data, "model_dir", str),
        trusted_keys=keys,
        models=models,
        broker=_broker(_get(data, "broker", dict), base, device_id),
        client=_client(data.get("client", {})),
        fleet=_id(_get(data, "fleet", str), "fleet") if "fleet" in data else None,
        trust_root=root,
    )


def _trust(data: dict, base: Path) -> tuple[tuple[Path, ...], Path | None]:
    """trusted_keys (simple mode) or trust_root: exactly one of them."""
    if ("trusted_keys" in data) == ("trust_root" in data):
        raise ConfigError("give trusted_keys (a list of .pub files) or trust_root (the root file from `rankcast "
                          "trust init`), exactly one of them")
    if "trust_root" in data:
        return (), _file(base, _get(data, "trust_root", str), "trust_root")
    keys = tuple(_file(base, _str(k, "trusted_keys"), "trusted_keys") for k in _get(data, "trusted_keys", list))
    if not keys:
        raise ConfigError("trusted_keys must list at least one public key (.pub)")
    return keys, None


def _broker(table: dict, base: Path, device_id: str) -> BrokerSettings:
    _check_keys(table, {"url", "username", "password_file", "cafile", "prefix", "keepalive"}, "[broker]")
    try:
        url = BrokerUrl.parse(_get(table, "url", str, "[broker] "))
    except ValueError as exc:
        raise ConfigError(f"[broker] url: {exc}") from None
    username = table.get("username", device_id)
    if username != device_id:
        raise ConfigError(
            f"[broker] username {username!r} must equal device_id {device_id!r}: the broker ACL lets a device "
            "write only below its own username"
        )
    optional = {
        name: _file(base, _str(table[name], name), name) for name in ("password_file", "cafile") if name in table
    }
    keepalive = table.get("keepalive", 60)
    if type(keepalive) is not int or not 10 <= keepalive <= 65535:
        raise ConfigError("[broker] keepalive must be an integer number of seconds within 10..65535")
    return BrokerSettings(url, username, prefix=_str(table.get("prefix", DEFAULT_PREFIX), "prefix"),
                          keepalive=keepalive, **optional)


_INTEGERS = {"chunk_window", "max_chain"}


def _client(table: object) -> ClientSettings:
    if not isinstance(table, dict):
        raise ConfigError("[client] must be a table")
    _check_keys(table, {f.name for f in fields(ClientSettings)}, "[client]")
    for name, value in table.items():
        if type(value) not in ((int,) if name in _INTEGERS else (int, float)):
            raise ConfigError(f"[client] {name} must be a number")
    return ClientSettings(**table)


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )


def _get(table: dict, key: str, kind: type, where: str = ""):
    if key not in table:
        raise ConfigError(f"{where}{key} is required")
    if not isinstance(table[key], kind):
        raise ConfigError(f"{where}{key} must be a {kind.__name__}")
    return table[key]


def _str(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} must hold strings, got {value!r}")
    return value


def _id(value: str, key: str) -> str:
    try:
        return validate_id(value, key)
    except FormatError as exc:
        raise ConfigError(str(exc)) from None


def _file(base: Path, value: str, key: str) -> Path:
    path = base / value
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist")
    return path
