"""The testbed's one device.toml writer: what it writes, device_client reads back as the same config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from device_client.config import ClientSettings, load_config
from simulator.testbed.broker import Broker
from simulator.testbed.devices import QUICK_CLIENT, DeviceHome, device_config, install_model, render_config
from simulator.testbed.synthetic import make_keypair, random_model_file


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Broker:
    return Broker(tmp_path_factory.mktemp("testbed") / "broker", devices=["dev-a", "dev-b"])  # set up, not started


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_a_rendered_config_reads_back_as_the_same_config(broker: Broker, tmp_path: Path, tls: bool) -> None:
    _, public = make_keypair(tmp_path / "keys")
    client = ClientSettings(chunk_window=3, backoff_initial=0.25, backoff_max=7.5, status_interval=0.5)
    config = device_config(tmp_path / "home", broker, "dev-a", ["m1", "m2"], public,
                           url=None if tls else broker.dev_url, client=client)
    path = tmp_path / "device.toml"
    path.write_text(render_config(config))
    assert load_config(path) == config
    assert (config.broker.cafile is not None) == tls and config.broker.url.tls == tls


def test_a_device_home_holds_its_config_models_and_what_it_spooled(broker: Broker, tmp_path: Path) -> None:
    _, public = make_keypair(tmp_path / "keys")
    home = DeviceHome.create(tmp_path / "home", broker, "dev-b", "m1", public,
                             client=replace(QUICK_CLIENT, chunk_window=2))
    assert load_config(home.config_path).client.chunk_window == 2
    model_file = random_model_file(4)
    home.install("m1", model_file, 3)
    version, sha, on_disk = home.state("m1")
    assert version == 3 and sha == on_disk and home.installed("m1") == (3, sha)
    assert home.model_file("m1") == model_file and home.spooled("m1") == set() and home.staged("m1") == []


def test_installing_leaves_no_source_file_behind(tmp_path: Path) -> None:
    install_model(tmp_path / "models", "m", random_model_file(1), 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_a_broker_clears_an_earlier_brokers_directory_but_no_other(tmp_path: Path) -> None:
    first = Broker(tmp_path / "broker")
    (first.layout.root / "db" / "stale").write_text("retained state of an earlier run")
    Broker(tmp_path / "broker")
    assert not (tmp_path / "broker" / "db" / "stale").exists()
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("not a broker's")
    with pytest.raises(FileExistsError, match="not a broker's"):
        Broker(tmp_path / "work")
    assert (tmp_path / "work" / "notes.txt").exists()
