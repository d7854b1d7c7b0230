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
