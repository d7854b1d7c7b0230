"""`rankcast publish --canary` over a real broker to devices that run a .tflite model (torch-free)."""

from __future__ import annotations

import numpy as np

from codec.keys import PRIVATE_NAME
from codec.update_file import updated_model_file, write_update_file
from rankcast.cli import main
from simulator.testbed import synthetic
from simulator.testbed.broker import PUBLISHER
from simulator.testbed.synthetic_tflite import INPUTS, make_tflite
from simulator.testbed.waits import wait_for


def test_publish_with_a_canary_reaches_tflite_devices(broker, device_ids, make_device, model_id, signing,
                                                      tmp_path, capsys) -> None:
    base = make_tflite(31)
    device = make_device(broker, device_ids(1)[0], model_id, base)
    update = synthetic.random_update(base, 32, rank=2)
    write_update_file(tmp_path / "v2.rcu", update)
    (tmp_path / "deployed.tflite").write_bytes(base)
    np.save(tmp_path / "canary.npy", np.random.default_rng(0).standard_normal((4, INPUTS)).astype(np.float32))
    login = ["--broker", broker.operator_url, "--username", PUBLISHER, "--password-file",
             str(broker.layout.credential(PUBLISHER)), "--cafile", str(broker.layout.ca_cert)]
    publish = ["publish", *login, "--model", model_id, "--key", str(signing[1].parent / PRIVATE_NAME),
               "--update", str(tmp_path / "v2.rcu"), "--canary", str(tmp_path / "canary.npy"), "--new-model"]

    assert main([*publish, "--version", "2"]) == 1  # a delta's canary needs the deployed file
    assert "--deployed" in capsys.readouterr().err
    (tmp_path / "other.tflite").write_bytes(make_tflite(33))
    assert main([*publish, "--version", "2", "--deployed", str(tmp_path / "other.tflite")]) == 1
    assert "[bad-update]" in capsys.readouterr().err

    assert main([*publish, "--version", "2", "--deployed", str(tmp_path / "deployed.tflite")]) == 0
    out = capsys.readouterr().out
    assert "canary of 4 inputs" in out and "full fallback" in out, "--deployed gives the full fallback too"
    wait_for(lambda: device.version(model_id) == 2, "the update with its canary applied")
    assert device.home.model_file(model_id) == updated_model_file(base, update)
    assert device.device.status().last_error is None
