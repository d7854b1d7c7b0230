"""Codec throughput: encode, decode and apply of rank-r updates (payload format 2) to a model of N parameters.

Prints a table and writes OUT/codec_bench.json. Decode is compared with plain zstd decompression of
the same bytes, so the cost of strict validation is visible as a ratio measured in the same run.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import zstandard

from codec.apply import apply_payload
from codec.dictionary import zstd_dictionary
from codec.payload import encode_payload, iter_records
from codec.weights import encode_weights
from simulator.testbed.synthetic import random_records

LAYER_WIDTH = 1024


@dataclass(frozen=True)
class CodecBenchResult:
    parameters: int
    layers: int
    rank: int
    payload_bytes: int
    decompressed_bytes: int
    model_bytes: int
    encode_s: float
    decode_s: float
    zstd_decompress_s: float
    apply_s: float
    apply_peak_extra_bytes: int
    largest_tensor_bytes: int

    @property
    def decode_over_zstd(self) -> float:
        return self.decode_s / self.zstd_decompress_s


def wide_model(parameters: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Square Linear layers of LAYER_WIDTH with biases, about ``parameters`` weights in all."""
    rng = np.random.default_rng(seed)
    layers = max(1, round(parameters / (LAYER_WIDTH * LAYER_WIDTH)))
    tensors: dict[str, np.ndarray] = {}
    for index in range(layers):
        scale = 1 / math.sqrt(LAYER_WIDTH)
        tensors[f"layer{index}.weight"] = (rng.standard_normal((LAYER_WIDTH, LAYER_WIDTH)) * scale).astype(np.float32)
        tensors[f"layer{index}.bias"] = np.zeros(LAYER_WIDTH, np.float32)
    return tensors


def _best_time(action: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def measure(parameters: int, rank: int, repeats: int) -> CodecBenchResult:
    """Run every measurement once per repeat and keep the best time of each."""
    model = wide_model(parameters)
    model_file = encode_weights(model)
    shapes = {name: tensor.shape for name, tensor in model.items()}
    encode_s = _best_time(lambda: encode_payload(random_records(shapes, rank), layout=model), repeats)
    payload, decompressed = encode_payload(random_records(shapes, rank), layout=model)
    decode_s = _best_time(lambda: sum(1 for _ in iter_records(payload, decompressed, layout=model)), repeats)
    plain = zstandard.ZstdDecompressor(dict_data=zstd_dictionary())
    zstd_s = _best_time(lambda: plain.decompress(payload), repeats)
    with tempfile.TemporaryDirectory() as workdir:
        base, target = Path(workdir) / "base.rcw", Path(workdir) / "target.rcw"
        base.write_bytes(model_file)

        def apply_once() -> None:
            shutil.copyfile(base, target)
            apply_payload(target, payload, decompressed)

        apply_s = _best_time(apply_once, repeats)
        tracemalloc.start()
        apply_once()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return CodecBenchResult(
        parameters=sum(t.size for t in model.values()), layers=len(model) // 2, rank=rank,
        payload_bytes=len(payload), decompressed_bytes=decompressed, model_bytes=len(model_file),
        encode_s=encode_s, decode_s=decode_s, zstd_decompress_s=zstd_s, apply_s=apply_s,
        apply_peak_extra_bytes=peak, largest_tensor_bytes=max(t.nbytes for t in model.values()),
    )


def format_report(result: CodecBenchResult) -> str:
    mparams = result.parameters / 1e6

    def rate(seconds: float) -> str:
        return f"{seconds * 1e3:9.1f} ms  {mparams / seconds:8.1f} Mparam/s"

    return "\n".join([
        f"model: {result.parameters:,} parameters in {result.layers} layers ({result.model_bytes / 2**20:.1f} MiB), "
        f"rank-{result.rank} update: {result.payload_bytes:,} bytes compressed "
        f"({result.model_bytes / result.payload_bytes:.0f}x smaller than the model)",
        f"  encode (quantise + msgpack + zstd)  {rate(result.encode_s)}",
        f"  decode (zstd + msgpack + checks)    {rate(result.decode_s)}",
        f"  plain zstd decompression            {result.zstd_decompress_s * 1e3:9.2f} ms",
        f"  decode / plain zstd                 {result.decode_over_zstd:9.1f}x",
        f"  apply (copy + decode + apply + hash){rate(result.apply_s)}",
        f"  apply peak extra memory             {result.apply_peak_extra_bytes / 2**20:9.1f} MiB "
        f"(largest tensor {result.largest_tensor_bytes / 2**20:.1f} MiB)",
    ])


def run_codec_bench(parameters: list[int], rank: int, repeats: int, out: Path) -> int:
    """`rankcast bench codec`: print the figures of every model size and write OUT/codec_bench.json."""
    machine = f"{platform.machine()}, NumPy {np.__version__}"
    results = []
    for size in parameters:
        result = measure(size, rank, max(1, repeats))
        print(f"{machine}\n{format_report(result)}")
        results.append(asdict(result) | {"decode_over_zstd": result.decode_over_zstd})
    out.mkdir(parents=True, exist_ok=True)
    (out / "codec_bench.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print(f"wrote {out / 'codec_bench.json'}")
    return 0
