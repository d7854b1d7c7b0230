"""`rankcast demo`: what `make demo` runs — a retrained model to a simulated fleet, end to end."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train, export to TFLite, roll a factorised update out to a simulated NB-IoT/LTE-M fleet",
        description="Trains a digits model in PyTorch and exports it to TFLite, trains a factorised update for "
        "concept drift, rolls it out through a real Mosquitto to simulated devices (real device clients, each "
        "behind an emulated link) next to sending the whole model, and ends with update size, fleet completion "
        "times and the accuracy measured on the devices' own TFLite files. About two minutes on two cores.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo-out"), metavar="DIR", help="where files are written")
    parser.add_argument("--devices", type=int, default=50, help="fleet size (default 50)")
    parser.add_argument("--link", default="nbiot:0.5,ltem", metavar="PROFILE[:FRACTION],...",
                        help="link mix (default nbiot:0.5,ltem; see `rankcast simulate --list-links`)")
    parser.add_argument("--time-scale", type=float, default=2.0, metavar="X",
                        help="run links X times faster; times are reported as link time (default 2: on two cores "
                        "higher scales leave the simulator CPU-bound, and it then reports no times)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from simulator.demo import DemoConfig, run_demo

    return run_demo(args.out, DemoConfig(devices=args.devices, links=args.link, time_scale=args.time_scale))
