"""`rankcast demo`: the story end to end, with the parts that exist today (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="walk through a release: build, sign, chunk, reassemble, verify, apply exactly",
        description="Builds a model file and a factorised rank-4 update, signs and chunks the release, "
        "reassembles it out of order as a device would, refuses a forged chunk and a replayed release, "
        "applies the update exactly and checks the target sha256. Prints sizes against the full model.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo-out"), metavar="DIR", help="where files are written")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from simulator.demo import run_demo

    return run_demo(args.out)
