"""Fixtures for the device client without a broker: keys, models, and a Device fed by an in-memory table
of retained messages (the MQTT suite in tests/mqtt runs the same Device against a real Mosquitto)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from codec.keys import SigningKey
from codec.release import Release
from codec.topics import BrokerUrl, chunk_topic, manifest_topic, release_manifest_topic
from device_client.config import BrokerSettings, ClientSettings, DeviceConfig
from device_client.device import Device
from simulator.testbed import synthetic
from simulator.testbed.devices import install_model

MODEL = "digits"


class Retained:
    """Topic -> payload, as a broker retains them; ``pump`` delivers what a device subscribes to."""

    def __init__(self) -> None:
        self.messages: dict[str, bytes] = {}

    def add(self, release: Release, manifest: bytes | None = None, latest: bool = True) -> None:
        """Retain ``release`` as a publisher does: its chunks, its own manifest, and (``latest``) the model's
        manifest (``manifest`` in its place, for a tampered one)."""
        m = release.manifest
        for index, chunk in enumerate(release.chunks):
            self.messages[chunk_topic(m.model, m.version, m.payload_kind, index)] = chunk
        self.messages[release_manifest_topic(m.model, m.version, m.payload_kind)] = release.envelope
        if latest:
            self.messages[manifest_topic(m.model)] = release.envelope if manifest is None else manifest

    def pump(self, device: Device, max_chunks: int | None = None) -> int:
        """Deliver what the device subscribes to (each topic once), applying as it goes; returns chunks sent."""
        delivered, seen = 0, set()
        while fresh := sorted(device.wanted_topics() - seen):
            for topic in fresh:
                seen.add(topic)
                is_chunk = "/chunks/" in topic
                if topic not in self.messages or (is_chunk and max_chunks is not None and delivered >= max_chunks):
                    continue
                device.handle(topic, self.messages[topic])
                delivered += is_chunk
            if device.has_work():
                device.work()
        return delivered


@pytest.fixture
def signing(tmp_path: Path) -> tuple[SigningKey, Path]:
    return synthetic.make_keypair(tmp_path / "keys")


@pytest.fixture
def base_model() -> bytes:
    return synthetic.random_model_file(1)


@pytest.fixture
def make_device(tmp_path: Path, signing, base_model) -> Callable[..., Device]:
    """A Device for MODEL with ``base_model`` installed as version 1 (``installed=False``: nothing), in
    ``fleet`` if given."""

    def make(device_id: str = "dev-1", installed: bool = True, trusted: Path | None = None, fleet: str | None = None,
             **options) -> Device:
        model_dir = tmp_path / device_id
        if installed and not (model_dir / MODEL).exists():
            install_model(model_dir, MODEL, base_model, 1)
        config = DeviceConfig(
            device_id=device_id, model_dir=model_dir, trusted_keys=(trusted or signing[1],), models=(MODEL,),
            broker=BrokerSettings(BrokerUrl.parse("mqtt://127.0.0.1:1")), client=ClientSettings(chunk_window=4),
            fleet=fleet,
        )
        return Device(config, **options)

    return make


@pytest.fixture
def retained() -> Retained:
    return Retained()
