"""`rankcast bench runtimes`: how far TFLite runtimes and CPUs disagree on the same model and inputs.

A canary is signed with the outputs of the publisher's runtime and checked by every device's; this
measures what a canary's tolerance must allow. Four models, exported to .tflite: three on digits (the
benchmark's MLP, a CNN on the 8×8 digits without the benchmark CNN's upsampling, which TFLite export does
not take, and a wide MLP), and a MobileNet-like CNN with logits of about ±40. They run on canary inputs
in this process and in every other Python given (another runtime, another CPU under qemu-user: `make
aarch64`). For each pair it reports the largest absolute difference, the largest difference relative to
the output's magnitude, the largest output, and whether the canary default (publisher.tflite.canary)
holds.

Writes DIR/runtimes.json and prints a table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codec.canary import Canary
from device_client.tflite_runtime import interpreter_class, run
from publisher.tflite.canary import DEFAULT_ATOL, DEFAULT_RTOL
from publisher.tflite.export import export_tflite_bytes
from publisher.training.loop import TrainConfig, train
from simulator.bench.models import build_model
from simulator.bench.scenarios import scenario

EXAMPLES = 64
_RUN = """
import json, platform, sys
import numpy as np
from pathlib import Path
from device_client.tflite_runtime import interpreter_class, run
pairs = zip(sys.argv[1::2], sys.argv[2::2])
outputs = {model: run(Path(model), np.load(inputs)).tolist() for model, inputs in pairs}
json.dump({"where": f"{platform.machine()} {interpreter_class().__module__.split('.')[0]} numpy {np.__version__}",
           "outputs": outputs}, sys.stdout)
"""


@dataclass(frozen=True)
class Spread:
    """One model on one other runtime or CPU, against the publisher's outputs."""

    model: str
    where: str
    max_abs_diff: float
    max_rel_diff: float
    max_abs_output: float
    default_holds: bool


def plain_cnn() -> nn.Module:
    """Two 3×3 conv blocks (16, 32 channels) with pooling on the 8×8 digits, then 128 -> 10."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(128, 10))


def wide_mlp() -> nn.Module:
    """64 -> 1024 -> 1024 -> 10: long sums, where kernels on different CPUs split them differently."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, 10))


def mobile_cnn() -> nn.Module:
    """A MobileNet-like stack on 3×32×32 (depthwise and pointwise convolutions, ReLU6, average pooling) with
    random weights, its output layer scaled so that logits reach about ±40."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU6(),
            nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU6(), nn.Conv2d(32, 64, 1), nn.ReLU6(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=64), nn.ReLU6(), nn.Conv2d(64, 128, 1), nn.ReLU6(),
            nn.Conv2d(128, 128, 3, stride=2, padding=1, groups=128), nn.ReLU6(), nn.Conv2d(128, 256, 1), nn.ReLU6(),
            nn.AvgPool2d(4), nn.Flatten(), nn.Linear(256, 10),
        ).eval()
        with torch.no_grad():
            model[-1].weight.mul_(600)
    return model


def models(folder: Path, epochs: int = 30) -> dict[str, tuple[Path, Path]]:
    """Name -> (.tflite file, canary inputs .npy) under ``folder``: the digits models trained on the drift
    scenario's base data with its held-out digits, the mobile CNN with random images."""
    data = scenario("drift")
    digits = data.test.x[:EXAMPLES].numpy()
    images = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)  # a canary holds 64 KiB
    found = {}
    for name, build, inputs in (("mlp", lambda: build_model("mlp"), digits), ("cnn", plain_cnn, digits),
                                ("wide", wide_mlp, digits), ("mobile", mobile_cnn, images)):
        model = build()
        if inputs is digits:
            train(model, model.parameters(), data.base.x, data.base.y, TrainConfig(epochs=epochs))
        found[name] = folder / f"{name}.tflite", folder / f"{name}.npy"
        found[name][0].write_bytes(export_tflite_bytes(model, (1, *inputs.shape[1:]))[0])
        np.save(found[name][1], inputs)
    return found


def measure(pythons: list[str], folder: Path, epochs: int = 30) -> list[Spread]:
    """Every model on every Python in ``pythons`` against this process's runtime."""
    files = models(folder, epochs)
    reference = {name: run(path, np.load(inputs)) for name, (path, inputs) in files.items()}
    arguments = [str(part) for pair in files.values() for part in pair]
    spreads = []
    for python in pythons:
        done = subprocess.run([python, "-c", _RUN, *arguments], capture_output=True, text=True, timeout=900,
                              check=True)
        found = json.loads(done.stdout)
        for name, (path, inputs) in files.items():
            expected, outputs = reference[name], np.asarray(found["outputs"][str(path)], np.float32)
            canary = Canary.from_arrays(np.load(inputs), expected, DEFAULT_ATOL, DEFAULT_RTOL)
            diff = np.abs(outputs.astype(np.float64) - expected)
            spreads.append(Spread(name, found["where"], float(diff.max()),
                                  float((diff / np.maximum(np.abs(expected), 1e-30)).max()),
                                  float(np.abs(expected).max()), canary.holds(outputs)))
    return spreads


def format_table(spreads: list[Spread], reference: str) -> str:
    header = f"{'model':<6} {'runtime and CPU':<40} {'max |diff|':>11} {'max rel':>9} {'max |out|':>9} default"
    lines = [f"reference: {reference}", header, "-" * len(header)]
    lines += [f"{s.model:<6} {s.where:<40} {s.max_abs_diff:>11.3g} {s.max_rel_diff:>9.3g} {s.max_abs_output:>9.3g} "
              f"{'holds' if s.default_holds else 'FAILS'}" for s in spreads]
    lines.append(f"canary default: |output - expected| <= {DEFAULT_ATOL:g} + {DEFAULT_RTOL:g} x |expected|")
    return "\n".join(lines)


def run_runtimes_bench(pythons: list[str], out: Path, epochs: int = 30) -> int:
    """Measure, print the table, write OUT/runtimes.json; 0 if the default holds everywhere, else 1."""
    out.mkdir(parents=True, exist_ok=True)
    import platform

    reference = f"{platform.machine()} {interpreter_class().__module__.split('.')[0]} numpy {np.__version__}"
    with tempfile.TemporaryDirectory(prefix="rankcast-runtimes-") as folder:
        spreads = measure(pythons, Path(folder), epochs)
    print(format_table(spreads, reference))
    document = {"reference": reference, "atol": DEFAULT_ATOL, "rtol": DEFAULT_RTOL,
                "spreads": [asdict(s) for s in spreads]}
    (out / "runtimes.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out / 'runtimes.json'}", file=sys.stderr)
    return 0 if all(s.default_holds for s in spreads) else 1
