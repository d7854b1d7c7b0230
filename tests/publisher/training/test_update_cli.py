"""`rankcast update build` end to end on a tiny model written to tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.apply import apply_payload, file_sha256
from codec.payload import decode_payload
from codec.seeded import SeededSigns
from codec.update_file import read_update_file


def _build(tmp_path: Path, files: dict[str, Path], *extra: str) -> dict:
    """The command as a user runs it in the folder of tinynet.py: no PYTHONPATH, and ``-P`` keeps Python from
    putting the current directory on sys.path itself (as the `rankcast` script does not)."""
    command = [
        sys.executable, "-P", "-m", "rankcast", "update", "build", "--arch", "tinynet:build",
        "--base", str(files["base.pt"]), "--train", str(files["train.npz"]), "--eval", str(files["eval.npz"]),
        "--epochs", "8", "--out", str(tmp_path / "update.rcu"), "--json", *extra,
    ]
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "epoch 1/" in done.stderr and done.stderr.rstrip().endswith("done")  # progress on stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_build_prints_the_summary_and_pins_base_and_target(tmp_path, files):
    summary = _build(tmp_path, files, "--rank", "2", "--deployed", str(files["deployed.rcw"]))
    assert set(summary) == {"accuracy_before", "accuracy_after", "update_bytes", "full_model_bytes"}
    assert summary["accuracy_after"] > summary["accuracy_before"]
    assert 0 < summary["update_bytes"] < summary["full_model_bytes"]
    update = read_update_file(tmp_path / "update.rcu")
    assert len(update.payload) == summary["update_bytes"]
    assert update.base_sha256 == file_sha256(files["deployed.rcw"])
    copy = tmp_path / "device-copy.rcw"
    copy.write_bytes(files["deployed.rcw"].read_bytes())
    assert apply_payload(copy, update.payload, update.decompressed_length) == update.target_sha256


@pytest.mark.slow
def test_build_against_a_deployed_tflite_pins_the_patched_file(tmp_path, files):
    from publisher.tflite.export import export_tflite
    from publisher.training.reconstruct import load_file

    deployed = tmp_path / "deployed.tflite"
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    model.load_state_dict(torch.load(files["base.pt"]))
    export_tflite(model, (1, 16), deployed)
    summary = _build(tmp_path, files, "--rank", "2", "--deployed", str(deployed))
    update = read_update_file(tmp_path / "update.rcu")
    assert update.base_sha256 == file_sha256(deployed)
    copy = tmp_path / "device-copy.tflite"
    copy.write_bytes(deployed.read_bytes())
    assert apply_payload(copy, update.payload, update.decompressed_length) == update.target_sha256
    x, y = (torch.from_numpy(a) for a in np.load(files["eval.npz"]).values())
    patched = load_file(model, copy.read_bytes())
    assert summary["accuracy_after"] == pytest.approx(float((patched(x).argmax(1) == y).float().mean()))


@pytest.mark.slow
def test_build_sends_only_the_smaller_factors_as_trit_codes_within_the_budget(tmp_path, files):
    summary = _build(tmp_path, files, "--budget", "300")
    assert summary["update_bytes"] <= 300 and summary["accuracy_after"] > summary["accuracy_before"]
    update = read_update_file(tmp_path / "update.rcu")
    assert update.target_sha256 is None
    records = list(decode_payload(update.payload, update.decompressed_length, layout=update.layout()))
    assert records and all(isinstance(r.u, SeededSigns) != isinstance(r.v, SeededSigns) for r in records)
    assert {(r.v if isinstance(r.u, SeededSigns) else r.u).dtype for r in records} == {"trit"}


@pytest.mark.slow
def test_both_factors_build_sends_u_and_v_within_the_budget(tmp_path, files):
    summary = _build(tmp_path, files, "--budget", "500", "--both-factors", "--codes", "b1")
    assert summary["update_bytes"] <= 500
    update = read_update_file(tmp_path / "update.rcu")
    records = list(decode_payload(update.payload, update.decompressed_length, layout=update.layout()))
    assert records and all(r.u.dtype == r.v.dtype == "b1" for r in records)


@pytest.mark.slow
def test_unloadable_architecture_is_reported_in_one_line(tmp_path, files):
    command = [
        sys.executable, "-m", "rankcast", "update", "build", "--arch", "no_such_module:build",
        "--base", str(files["base.pt"]), "--train", str(files["train.npz"]), "--eval", str(files["eval.npz"]),
        "--out", str(tmp_path / "update.rcu"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "[bad-model]" in done.stderr and "PYTHONPATH" in done.stderr


@pytest.mark.slow
def test_the_default_build_is_the_smallest_update_within_a_point_of_a_full_finetune(tmp_path, files):
    command = [sys.executable, "-m", "rankcast", "update", "build", "--arch", "tinynet:build", "--base",
               str(files["base.pt"]), "--train", str(files["train.npz"]), "--eval", str(files["eval.npz"]),
               "--epochs", "8", "--out", str(tmp_path / "update.rcu")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "reference: a full fine-tune at lr 0.001" in done.stderr and "-> chosen: the" in done.stderr
    assert "less 1 point, on a validation split of" in done.stdout and "  reached    " in done.stdout
    assert f"  refit      its ranks trained again on all of {files['train.npz']}" in done.stdout
    info = read_update_file(tmp_path / "update.rcu").info
    assert info["validation_refit"] is True
    assert info["validation_accuracy"] > info["validation_bound"] >= info["validation_target"] - 1e-9
    assert info["validation_target"] == pytest.approx(info["validation_reference"] - 0.01)
    assert info["update_bytes"] == len(read_update_file(tmp_path / "update.rcu").payload)
