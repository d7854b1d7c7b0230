"""`rankcast inspect FILE`: what is in a manifest, a payload or a model file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="summarise a manifest, payload, .rcu update or model file (.tflite, RCW)",
        description="Print a human-readable summary of FILE, recognised by its content: a payload "
        "(records, shapes, ranks, bytes per record), a signed manifest (every field), a .rcu update, or a model "
        "file (.tflite or RCW: the tensors updates can change).",
    )
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument(
        "--trust", type=Path, action="append", default=[], metavar="KEY.pub",
        help="check a manifest's signature against this public key (repeatable)",
    )
    parser.add_argument(
        "--model", type=Path, metavar="MODEL",
        help="the model file (.tflite or RCW) a format-2 payload applies to: its records name tensors by "
        "position, so listing them needs it (an .rcu keeps its own)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from codec.describe import describe
    from codec.keys import load_verify_key

    keys = [load_verify_key(path) for path in args.trust]
    trusted = {key.key_id: key for key in keys} if keys else None
    model = None if args.model is None else args.model.read_bytes()
    print(describe(args.file.read_bytes(), trusted, model))
    return 0
