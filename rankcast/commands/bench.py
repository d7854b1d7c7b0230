"""`rankcast bench [updates|codec|records|fleet|runtimes|device]`: measured figures, printed and written to files."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks: update size vs accuracy (default), codec, record overhead, fleet, runtimes, device cost",
        description="updates: tunes and trains the factorised update and every baseline on three scenarios "
        "(refine, drift, newtask) on digits (MLP, CNN), MNIST (ResNet-8) and MNIST-1D (1-D CNN), and reports "
        "accuracy against real update bytes (DIR/bench.json, DIR/bench.png); --cases picks some. "
        "codec: encode, decode and apply throughput and apply's peak memory for 10M- and 50M-parameter models "
        "with rank-8 updates (DIR/codec_bench.json). "
        "records: what a record costs besides its codes in payload formats 1 and 2, on trained updates of a "
        "53-layer MobileNetV2 at rank 1, rank 8 and 1, 2 and 4 KB (DIR/record_overhead.json; about 12 minutes, "
        "--quick 2). "
        "fleet: takes fleets of simulated devices through a release and reports completion, peak memory and "
        "CPU (DIR/scale.json). runtimes: how far TFLite runtimes and CPUs disagree on four models, against "
        "the canary's default tolerance (DIR/runtimes.json); --python adds an interpreter to compare, e.g. "
        ".venv-device/bin/python or .aarch64/bin/python-tflite. device: peak memory and disk of a real device "
        "process taking a full and a delta release of a large model (DIR/device.json).",
    )
    parser.add_argument("what", nargs="?", choices=("updates", "codec", "records", "fleet", "runtimes", "device"),
                        default="updates")
    parser.add_argument("--quick", action="store_true",
                        help="fewer knob values and epochs (updates: one seed, about 20 minutes on 2 cores)")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), metavar="DIR", help="output directory")
    parser.add_argument("--jobs", type=_at_least_one, default=None, metavar="N",
                        help="updates: cases run in N processes at once (default: one per CPU core)")
    parser.add_argument("--cases", type=_case_names, default=None, metavar="NAMES",
                        help="updates: only the cases of these data sets, scenarios, models or "
                        "DATASET/SCENARIO/MODEL labels, comma-separated (e.g. mnist,mnist1d; default all)")
    parser.add_argument("--params", type=float, nargs="+", default=[10e6, 50e6], metavar="N",
                        help="codec: model sizes in parameters (default 10e6 50e6)")
    parser.add_argument("--rank", type=int, default=8, help="codec: rank of every update")
    parser.add_argument("--repeats", type=int, default=3, help="codec: timed repetitions (best is reported)")
    parser.add_argument("--devices", type=int, nargs="+", default=[1000], metavar="N",
                        help="fleet: fleet sizes to run, ascending (default 1000)")
    parser.add_argument("--link", default="wifi", metavar="PROFILE", help="fleet: link profile (default wifi)")
    parser.add_argument("--model-mib", type=_at_least_one, nargs="+", default=[50, 200], metavar="MIB",
                        help="device: model sizes in MiB (default 50 200)")
    parser.add_argument("--python", action="append", default=[], metavar="PATH",
                        help="runtimes: another Python to run the models in (repeatable)")
    parser.set_defaults(run=run)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: need at least 1")
    return value


def _case_names(text: str) -> str:
    from simulator.bench.cases import select

    try:
        select(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def run(args: argparse.Namespace) -> int:
    if args.what == "codec":
        from simulator.bench.codec import run_codec_bench

        return run_codec_bench([int(size) for size in args.params], args.rank, args.repeats, args.out)
    if args.what == "records":
        from simulator.bench.record_overhead import run_record_overhead

        return run_record_overhead(epochs=1 if args.quick else 2, examples=128 if args.quick else 512, out=args.out)
    if args.what == "device":
        from simulator.bench.device import run_device_bench

        return run_device_bench(args.model_mib, args.out)
    if args.what == "runtimes":
        from simulator.bench.runtimes import run_runtimes_bench

        return run_runtimes_bench(args.python, args.out)
    if args.what == "fleet":
        from simulator.bench.scale import run_scale_bench

        return run_scale_bench(args.devices, args.out, link=args.link)
    from simulator.bench.updates import run_update_bench

    return run_update_bench(quick=args.quick, out=args.out, jobs=args.jobs, cases=args.cases)
