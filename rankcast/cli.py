"""Argument parsing and dispatch for `rankcast`.

Each subcommand is a module in rankcast.commands with ``register(subparsers)``; the module imports only
the standard library at import time and loads its real work (torch, MQTT, ...) inside ``run``. So
`rankcast --help` and the device commands work on a device where torch is not installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommand modules, in the order `rankcast --help` lists them.
COMMANDS = (
    "demo", "keygen", "trust", "update", "export_tflite", "import_tflite", "inspect", "broker", "publish", "release",
    "rollout", "device", "status", "dashboard", "simulate", "bench", "selftest",
)

DESCRIPTION = """\
rankcast ships retrained neural networks to device fleets as small factorised updates.
The server freezes the deployed weights W and trains factors so each layer becomes W + U·V;
only the quantised factors travel, signed, chunked and compressed, and devices apply them
exactly, so every device runs the very model the server validated.
"""

EPILOG = "Run `rankcast COMMAND --help` for a command's options. Docs: README.md and docs/."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rankcast", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"rankcast.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; operator errors print one line and exit 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - only the packages' own errors and OS errors are reported tersely
        code = getattr(exc, "code", None)
        if isinstance(code, str):
            print(f"rankcast: error [{code}]: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, OSError):
            print(f"rankcast: error: {exc}", file=sys.stderr)
            return 1
        raise
