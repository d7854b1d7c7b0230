"""From PyTorch to an updated TFLite fleet, for real: a base MLP trained on digits, exported to .tflite and
installed on three devices; a factorised update trained, published over a real Mosquitto with a canary
and applied in place on every device; then the devices' TFLite predictions are compared with the
server's reconstructed PyTorch model. A release whose canary is wrong is refused and changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.canary import Canary
from codec.keys import SigningKey
from codec.model_files import read_model_slots
from codec.payload import encode_payload
from codec.quantise import dense_record
from codec.update_file import UpdateFile
from device_client.predictor import Predictor
from device_client.store import FileModelStore
from publisher.release.build import update_release
from publisher.release.fleet_status import read_fleet
from publisher.tflite.canary import update_canary, updated_file
from publisher.tflite.export import export_tflite
from publisher.training.factorised import FactorConfig, factorise, uniform_ranks
from publisher.training.fit import fit
from publisher.training.loop import TrainConfig, accuracy, predict, train
from publisher.training.reconstruct import model_file, updated_model
from simulator.bench.models import build_model
from simulator.bench.scenarios import scenario
from simulator.testbed import synthetic
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceHome, DeviceThread
from simulator.testbed.waits import wait_for

pytestmark = pytest.mark.slow

MODEL = "digits-tflite"
DEVICES = 3
CANARY_EXAMPLES = 8


@dataclass
class Fleet:
    broker: Broker
    devices: list[DeviceThread]
    key: SigningKey
    public: Path


@dataclass
class Update:
    """The server's side of release 2: what it trained, what it validated, what it published."""

    test_x: torch.Tensor
    test_y: torch.Tensor
    base_accuracy: float
    server_model: torch.nn.Module
    server_accuracy: float
    deployed: bytes
    target: bytes
    target_sha256: bytes
    canary: Canary


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("e2e-tflite")
    key, public = synthetic.make_keypair(root / "keys")
    devices: list[DeviceThread] = []
    with Broker(root / "broker", devices=DEVICES) as broker:
        yield Fleet(broker, devices, key, public)
        for device in devices:
            device.stop(wait=False)
        for device in devices:
            device.stop()


@pytest.fixture(scope="module")
def released(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Update:
    """Train, export, install on the devices, train the update, publish it, wait for every device."""
    torch.manual_seed(0)
    data = scenario("refine")  # the base saw 20% of the training digits, the update sees all of them
    base = build_model("mlp")
    train(base, base.parameters(), data.base.x, data.base.y, TrainConfig(epochs=30))
    root = tmp_path_factory.mktemp("e2e-server")
    export_tflite(base, (1, 1, 8, 8), root / "base.tflite")
    deployed = (root / "base.tflite").read_bytes()

    for device_id in fleet.broker.device_ids:
        home = DeviceHome.create(root.parent / device_id, fleet.broker, device_id, MODEL, fleet.public)
        home.install(MODEL, deployed, 1)
        fleet.devices.append(DeviceThread(home))

    deltas = factorise(base, uniform_ranks(base, 4), FactorConfig(dtype="i8"))
    fit(deltas, data.update.x, data.update.y, TrainConfig(epochs=12))
    payload, length = deltas.encode()
    server_model = updated_model(base, model_file(base.state_dict()), payload, length)
    update = UpdateFile(payload, length, "delta", _digest(deployed), None)
    target = updated_file(deployed, update)  # the publisher's own patched copy of the deployed .tflite
    update = UpdateFile(payload, length, "delta", _digest(deployed), _digest(target))
    canary = update_canary(deployed, update, data.test.x[:CANARY_EXAMPLES].numpy())
    fleet.broker.publish(update_release(update, model=MODEL, version=2, key=fleet.key, chunk_size=1024,
                                        lifetime_s=synthetic.DAY, canary=canary))
    wait_for(lambda: all(d.version(MODEL) == 2 for d in fleet.devices), f"{DEVICES} devices at version 2")
    return Update(data.test.x, data.test.y, accuracy(base, data.test.x, data.test.y), server_model,
                  accuracy(server_model, data.test.x, data.test.y), deployed, target, _digest(target), canary)


def _device_outputs(device: DeviceThread, x: torch.Tensor) -> np.ndarray:
    return Predictor(FileModelStore(device.device.config.model_dir), MODEL).predict(x.numpy())


def test_every_device_runs_exactly_the_released_tflite_file(fleet: Fleet, released: Update) -> None:
    for device in fleet.devices:
        running = device.home.model_file(MODEL)
        assert _digest(running) == released.target_sha256 and running == released.target
        assert device.device.status().last_error is None
    assert len(released.target) == len(released.deployed), "patched in place, not rebuilt"


def test_the_tflite_weights_equal_the_servers_reconstruction_bit_for_bit(released: Update) -> None:
    state = released.server_model.state_dict()
    slots = read_model_slots(memoryview(released.target))
    assert set(slots) == {name for name, value in state.items() if value.is_floating_point()}
    for name, slot in slots.items():
        assert np.array_equal(slot.view(released.target), state[name].numpy()), name


def test_device_tflite_accuracy_equals_the_servers_and_outputs_match_pytorch(fleet: Fleet, released: Update) -> None:
    server_logits = predict(released.server_model, released.test_x).numpy()
    server_classes = server_logits.argmax(axis=1)
    labels = released.test_y.numpy()
    assert float((server_classes == labels).mean()) == pytest.approx(released.server_accuracy, abs=1e-6)  # float32
    for device in fleet.devices:
        outputs = _device_outputs(device, released.test_x)
        assert np.abs(outputs - server_logits).max() <= 1e-4
        assert np.array_equal(outputs.argmax(axis=1), server_classes)
        assert (outputs.argmax(axis=1) == labels).sum() == (server_classes == labels).sum()
    assert released.server_accuracy > released.base_accuracy, "the update improves the model"
    runs = [_device_outputs(device, released.test_x) for device in fleet.devices]
    print(f"\naccuracy: base {released.base_accuracy:.4f}, server {released.server_accuracy:.4f}, devices "
          f"{[round(float((o.argmax(axis=1) == labels).mean()), 4) for o in runs]}; max |TFLite - PyTorch| "
          f"{max(np.abs(o - server_logits).max() for o in runs):.2e}")


def test_a_release_with_a_wrong_canary_is_refused_and_the_fleet_keeps_its_model(
    fleet: Fleet, released: Update
) -> None:
    records = [dense_record("5.bias", np.full(10, 0.01, np.float32), dtype="i8")]
    payload, length = encode_payload(records)
    update = UpdateFile(payload, length, "delta", released.target_sha256, None)
    target = updated_file(released.target, update)
    update = UpdateFile(payload, length, "delta", released.target_sha256, _digest(target))
    right = update_canary(released.target, update, released.canary.input_array())
    wrong = Canary.from_arrays(right.input_array(), right.output_array() + 0.5, 1e-5)
    fleet.broker.publish(update_release(update, model=MODEL, version=3, key=fleet.key, lifetime_s=synthetic.DAY,
                                        canary=wrong))

    def refused() -> bool:
        with fleet.broker.publisher() as session:
            rows = read_fleet(session, "rankcast", MODEL).devices
        return len(rows) == DEVICES and all((r.last_error or {}).get("code") == "canary-failed" for r in rows)

    wait_for(refused, "every device reporting canary-failed for release 3")
    for device in fleet.devices:
        assert device.version(MODEL) == 2 and device.home.model_file(MODEL) == released.target
        assert device.device.status().last_error.release == 3
