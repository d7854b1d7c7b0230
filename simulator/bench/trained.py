"""A trained update on a digits scenario: the deployed model and its factorised update, as files.

What `rankcast simulate --scenario` and the demo roll out: a digits MLP trained on the scenario's base
data (the deployed model), then a factorised update trained on its update data with the publisher's
own training, written as the model file devices run, the .rcu update and the target file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from codec.apply import apply_to_bytes
from codec.compact import layout_shapes
from codec.model_files import model_suffix, read_model_slots
from codec.update_file import UpdateFile, write_update_file
from publisher.training.factorised import factorise, uniform_ranks
from publisher.training.fit import fit
from publisher.training.loop import TrainConfig, accuracy, train
from publisher.training.reconstruct import model_file, updated_model
from publisher.training.update import DEFAULT_LR
from simulator.bench.models import build_model
from simulator.bench.scenarios import scenario


def build_scenario_update(
    name: str, workdir: Path, epochs: int = 12, rank: int = 8, tflite: bool = False
) -> tuple[Path, Path, Path]:
    """Train a digits MLP on scenario ``name``'s base data, then a rank-``rank`` factorised update on its
    update data; returns (base file, .rcu update, target file) under ``workdir``.

    RCW files, or with ``tflite`` float32 .tflite files (publisher.tflite.export) whose weight buffers the
    update patches in place. The .rcu's info holds the test accuracy of the base model and of the exact
    model the devices rebuild.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = scenario(name)
    model = build_model("mlp", seed=0)
    train(model, model.parameters(), data.base.x, data.base.y, TrainConfig(epochs=epochs))
    rcw = model_file(model.state_dict())
    if tflite:
        from publisher.tflite.export import export_tflite_bytes

        base = export_tflite_bytes(model, (1, *data.test.x.shape[1:]))[0]
    else:
        base = rcw
    delta_set = factorise(model, uniform_ranks(model, rank))
    fit(delta_set, data.update.x, data.update.y, TrainConfig(epochs=epochs, lr=DEFAULT_LR))
    layout = read_model_slots(memoryview(base))
    payload, length = delta_set.encode(layout)
    info = {
        "scenario": name, "rank": rank, "epochs": epochs,
        "base_accuracy": accuracy(model, data.test.x, data.test.y),
        "accuracy": accuracy(updated_model(model, base, payload, length), data.test.x, data.test.y),
    }
    target, target_sha = apply_to_bytes(base, payload, length)
    update = UpdateFile(payload, length, "delta", hashlib.sha256(base).digest(), target_sha, info,
                        layout_shapes(layout))
    suffix = model_suffix(base)
    paths = workdir / f"{name}-base{suffix}", workdir / f"{name}-update.rcu", workdir / f"{name}-target{suffix}"
    paths[0].write_bytes(base)
    write_update_file(paths[1], update)
    paths[2].write_bytes(target)
    return paths
