"""device.toml: what it accepts, what it refuses, and where relative paths point."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_client.config import load_config
from device_client.errors import ConfigError

VALID = """
device_id = "pump-7"
model_dir = "models"
trusted_keys = ["keys/signing.pub"]
models = ["digits", "anomaly"]

[broker]
url = "mqtts://broker.example.com"
username = "pump-7"
password_file = "pump-7.password"
cafile = "ca.crt"
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "keys").mkdir()
    for name in ("keys/signing.pub", "pump-7.password", "ca.crt"):
        (tmp_path / name).write_text("x\n")
    return tmp_path


def _load(directory: Path, text: str):
    path = directory / "device.toml"
    path.write_text(text)
    return load_config(path)


def test_a_valid_config_resolves_paths_next_to_it(config_dir: Path) -> None:
    config = _load(config_dir, VALID)
    assert config.device_id == "pump-7" and config.models == ("digits", "anomaly")
    assert config.model_dir == config_dir / "models"
    assert config.trusted_keys == (config_dir / "keys/signing.pub",)
    broker = config.broker
    assert (broker.url.host, broker.url.port, broker.url.tls) == ("broker.example.com", 8883, True)
    assert broker.password() == "x" and broker.prefix == "rankcast"
    assert config.client.chunk_window == 8 and config.fleet is None
    fleet = _load(config_dir, VALID.replace("[broker]", 'fleet = "production"\n[broker]'))
    assert fleet.fleet == "production"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (('device_id = "pump-7"', 'device_id = "a/b"'), "device_id"),
        (('models = ["digits", "anomaly"]', "models = []"), "models"),
        (('username = "pump-7"', 'username = "someone-else"'), "must equal device_id"),
        (('cafile = "ca.crt"', 'cafile = "missing.crt"'), "does not exist"),
        (('url = "mqtts://broker.example.com"', 'url = "http://broker"'), "url"),
        (("[broker]", "colour = 1\n[broker]"), "unknown key"),
        (("[broker]", "[client]\nchunk_window = 0\n[broker]"), "positive"),
        (("[broker]", 'fleet = "prod/eu"\n[broker]'), "fleet"),
        (("[broker]", "fleet = 7\n[broker]"), "fleet must be a str"),
    ],
)
def test_mistakes_are_refused_with_the_key_named(config_dir: Path, change, complaint) -> None:
    with pytest.raises(ConfigError, match=complaint):
        _load(config_dir, VALID.replace(*change))


def _documented() -> tuple[str, str]:
    """docs/device.md: its example device.toml, and its table of keys."""
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "device.md").read_text()
    (example,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    return example, text.split("## Every key", 1)[1]


def test_the_documented_example_parses_and_shows_the_defaults(tmp_path: Path) -> None:
    from device_client.config import ClientSettings

    example, _ = _documented()
    for name in ("signing.pub", "pump-0042.password", "ca.crt"):
        (tmp_path / name).write_text("x\n")
    config = _load(tmp_path, example)
    assert config.client == ClientSettings(), "the example's [client] values are the defaults"
    assert (config.fleet, config.broker.prefix, config.broker.keepalive) == ("production", "rankcast", 60)


def test_the_documented_table_names_every_key_the_parser_accepts() -> None:
    import re
    from dataclasses import fields

    from device_client.config import BrokerSettings, ClientSettings, DeviceConfig

    _, table = _documented()
    documented = set(re.findall(r"^\| `((?:\[\w+\] )?\w+)` \|", table, re.M))
    top = {f.name for f in fields(DeviceConfig)} - {"broker", "client"}
    expected = top | {f"[broker] {f.name}" for f in fields(BrokerSettings)} | {
        f"[client] {f.name}" for f in fields(ClientSettings)}
    assert documented == expected
