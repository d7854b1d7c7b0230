"""Golden releases: payloads of every kind, made once on one machine and applied on another CPU.

``write_cases(folder)`` (the publisher's machine) writes five model files (two RCW, one with every weight
subnormal; three .tflite: an MLP, a CNN with a depthwise convolution, an MLP of subnormal weights) and,
for each, payloads of every record kind: low-rank factors in every code width (b1, trit, i4, i8, i16),
unseeded or with a seeded U or V, at rank 1 and 8; dense records (f32, per-row i8, i4 set); sparse records
(f32 add, i8 set), each in payload format 1 and again in format 2 (the case's name ending in FORMAT_2);
and one full release. It records the sha256 each payload gives there.

``apply_cases(folder)`` (the device's CPU) first runs the device's own TFLite runtime on a model, as a
device does at its first canary check (tflite-runtime's aarch64 wheel turns on flush-to-zero then), and
applies every payload to a staged copy of its model file the way a device does (codec.apply_payload):

    python -m simulator.testbed.golden write DIR           # prints the count of cases
    python -m simulator.testbed.golden apply DIR           # prints JSON: machine, runtime, sha256 per case
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from codec.apply import apply_payload
from codec.arrays import CODE_MAX, pack
from codec.model_files import read_model_slots
from codec.payload import encode_payload
from codec.quantise import dense_record, full_record, sparse_record
from codec.records import LowRankRecord, Record
from codec.seeded import SeededSigns
from codec.weights import encode_weights
from publisher.tflite.ops import Lowering, Window
from simulator.testbed.synthetic_tflite import INPUTS, make_tflite

CODES = ("b1", "trit", "i4", "i8", "i16")
SEEDED = (None, "u", "v")
RANKS = (1, 8)
#: 2^-126: below this magnitude a float32 is subnormal.
SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)


def _subnormal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Float32 values whose bits make every one of them subnormal, of either sign."""
    magnitude = rng.integers(1, 1 << 23, size=shape, dtype=np.uint32)
    bits = magnitude | (rng.integers(0, 2, size=shape, dtype=np.uint32) << 31)
    return bits.view(np.float32)


def _normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.3).astype(np.float32)


def model_files() -> dict[str, bytes]:
    """The five model files, from fixed seeds (file name -> bytes)."""
    rng = np.random.default_rng(2026)
    rcw = encode_weights({"fc1.weight": _normal(rng, 48, 32), "fc1.bias": _normal(rng, 48),
                          "fc2.weight": _normal(rng, 10, 48), "fc2.bias": _normal(rng, 10)})
    tiny_rcw = encode_weights({"fc.weight": _subnormal(rng, 64, 48), "fc.bias": _subnormal(rng, 64)})
    return {"rcw.rcw": rcw, "subnormal.rcw": tiny_rcw, "mlp.tflite": make_tflite(7), "cnn.tflite": _cnn(rng),
            "subnormal.tflite": _tiny_mlp(rng)}


def _cnn(rng: np.random.Generator) -> bytes:
    """conv 3->4 (SAME) -> ReLU -> depthwise 4->8 stride 2 -> ReLU6 -> flatten -> linear 128->5; input 1×3×8×8."""
    lowering = Lowering()
    x = lowering.input("x", (1, 3, 8, 8))
    x = lowering.conv2d("conv", x, _normal(rng, 4, 3, 3, 3), _normal(rng, 4), Window((3, 3), (1, 1), (1,) * 4), 1)
    x = lowering.relu("relu", x)
    x = lowering.conv2d("dw", x, _normal(rng, 8, 1, 3, 3), _normal(rng, 8), Window((3, 3), (2, 2), (1,) * 4), 4)
    x = lowering.flatten("flatten", lowering.relu("relu6", x, six=True))
    lowering.output(lowering.linear("fc", x, _normal(rng, 5, 128), _normal(rng, 5)))
    return lowering.finish()[0]


def _tiny_mlp(rng: np.random.Generator) -> bytes:
    """The MLP shape of synthetic_tflite with every weight subnormal."""
    lowering = Lowering()
    x = lowering.input("x", (1, INPUTS))
    x = lowering.relu("relu", lowering.linear("fc1", x, _subnormal(rng, 32, INPUTS), _subnormal(rng, 32)))
    lowering.output(lowering.linear("fc2", x, _subnormal(rng, 4, 32), _subnormal(rng, 4)))
    return lowering.finish()[0]


def _factor(rng: np.random.Generator, shape: tuple[int, int], dtype: str, per: int | None):
    """Random codes of ``dtype`` and float32 scales (one per row or column along ``per``, or one)."""
    limit = CODE_MAX[dtype]
    codes = rng.choice([-1, 1], size=shape) if dtype == "b1" else rng.integers(-limit, limit + 1, size=shape)
    scales = rng.uniform(0.5, 1.5, size=shape[per] if per is not None else 1).astype(np.float32)
    return pack(codes.astype(np.int16 if dtype == "i16" else np.int8), dtype), scales


def _lowrank(rng: np.random.Generator, name: str, shape: tuple[int, ...], rank: int, dtype: str, seeded: str | None,
             tiny: bool) -> LowRankRecord:
    """A rank-``rank`` record whose ΔW entries are at most about 1e-3 (``tiny``: about 2^-124, so products
    and sums cross the subnormal range); ``seeded`` names the factor sent as a seed, if any."""
    out, rest = shape[0], int(np.prod(shape[1:]))
    u, u_scale = _factor(rng, (out, rank), dtype, 0)
    v, v_scale = _factor(rng, (rank, rest), dtype, 1)
    limit = CODE_MAX[dtype]
    size = SMALLEST_NORMAL * 4 if tiny else 1e-3
    u_scale = u_scale * np.float32(size / (rank * limit * (1 if seeded else limit)))
    if seeded == "u":
        u = SeededSigns((out, rank), int(rng.integers(0, 2**63)))
        u_scale = np.full(1, size / (rank * limit), np.float32)
    if seeded == "v":
        v, v_scale = SeededSigns((rank, rest), int(rng.integers(0, 2**63))), np.ones(1, np.float32)
    return LowRankRecord(name, tuple(shape), u, pack(u_scale, "f32"), v, pack(v_scale, "f32"))


def payloads(model: bytes, tiny: bool, seed: int) -> dict[str, list[Record]]:
    """Every kind of payload for ``model``'s tensors (case name -> records)."""
    rng = np.random.default_rng(seed)
    slots = read_model_slots(memoryview(model))
    shapes = {name: slot.shape for name, slot in slots.items()}
    matrices = [name for name, shape in shapes.items() if len(shape) >= 2]
    vectors = [name for name, shape in shapes.items() if len(shape) == 1]
    size = SMALLEST_NORMAL if tiny else 1e-2
    cases: dict[str, list[Record]] = {}
    for dtype in CODES:
        for seeded in SEEDED:
            for rank in RANKS:
                records = [_lowrank(rng, name, shapes[name], rank, dtype, seeded, tiny) for name in matrices]
                cases[f"lowrank-{dtype}-{seeded or 'sent'}-r{rank}"] = records
    cases["dense-f32-add"] = [dense_record(n, rng.standard_normal(shapes[n]) * size) for n in shapes]
    cases["dense-i8-rows-add"] = [dense_record(n, rng.standard_normal(shapes[n]) * size, dtype="i8",
                                               per_row=len(shapes[n]) > 1) for n in shapes]
    cases["dense-i4-set"] = [dense_record(n, rng.standard_normal(shapes[n]) * size, "set", "i4") for n in vectors]
    cases["sparse-f32-add"] = [_sparse(rng, n, shapes[n], "add", "f32", size) for n in shapes]
    cases["sparse-i8-set"] = [_sparse(rng, n, shapes[n], "set", "i8", size) for n in matrices]
    return cases


def _sparse(rng: np.random.Generator, name: str, shape: tuple[int, ...], mode: str, dtype: str, size: float):
    count = int(np.prod(shape))
    positions = np.sort(rng.choice(count, size=max(1, count // 5), replace=False))
    return sparse_record(name, shape, positions, rng.standard_normal(positions.size) * size, mode, dtype)


#: The suffix of a case's twin in payload format 2 (the same records, so the same sha256).
FORMAT_2 = "@format2"


def write_cases(folder: Path) -> dict[str, str]:
    """Write the model files and every payload under ``folder``; returns case -> sha256 hex here."""
    folder = Path(folder)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "payloads").mkdir(exist_ok=True)
    index: dict[str, dict] = {}
    for number, (file_name, model) in enumerate(model_files().items()):
        (folder / "models" / file_name).write_bytes(model)
        layout = read_model_slots(memoryview(model))
        for kind, records in payloads(model, "subnormal" in file_name, seed=number).items():
            index[f"{file_name}/{kind}"] = {"model": file_name, "records": records, "layout": None}
            index[f"{file_name}/{kind}{FORMAT_2}"] = {"model": file_name, "records": records, "layout": layout}
    index["full/mlp.tflite"] = {"model": "rcw.rcw", "records": [full_record(make_tflite(8))], "layout": None}
    cases = {}
    for number, (name, case) in enumerate(index.items()):
        payload, length = encode_payload(case["records"], layout=case["layout"])
        (folder / "payloads" / f"{number:03d}.bin").write_bytes(payload)
        cases[name] = {"model": case["model"], "payload": f"{number:03d}.bin", "length": length}
    (folder / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    return apply_cases(folder, run_runtime=False)["sha256"]


def apply_cases(folder: Path, run_runtime: bool = True) -> dict:
    """Apply every case of ``folder`` as a device does; the machine, runtime and sha256 hex per case."""
    folder = Path(folder)
    runtime = _run_the_runtime(folder / "models" / "mlp.tflite") if run_runtime else None
    from codec.fpenv import is_ieee_default  # after the runtime: what it left the process with

    cases = json.loads((folder / "cases.json").read_text())
    digests = {}
    with tempfile.TemporaryDirectory(prefix="rankcast-golden-") as scratch:
        for name, case in cases.items():
            staged = Path(scratch) / case["model"]
            shutil.copyfile(folder / "models" / case["model"], staged)
            payload = (folder / "payloads" / case["payload"]).read_bytes()
            digests[name] = apply_payload(staged, payload, case["length"]).hex()
    return {"machine": platform.machine(), "numpy": np.__version__, "runtime": runtime,
            "ieee_after_runtime": is_ieee_default(), "sha256": digests}


def _run_the_runtime(model: Path) -> str:
    """Run the device's TFLite wrapper once (it imports whichever runtime is installed); its module name."""
    from device_client.tflite_runtime import interpreter_class, run

    outputs = run(model, np.ones((1, INPUTS), np.float32))
    if not np.isfinite(outputs).all():
        raise RuntimeError("the TFLite runtime gave non-finite outputs on the golden MLP")
    return interpreter_class().__module__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.testbed.golden", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("write", "apply"))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.action == "write":
        print(f"{len(write_cases(args.folder))} golden cases in {args.folder}")
    else:
        json.dump(apply_cases(args.folder), sys.stdout)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
