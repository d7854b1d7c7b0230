"""`rankcast selftest`: the reliability and security suite (faults, hostile input, ACL matrix, load)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "selftest",
        help="run the reliability and security suite and print what held",
        description="Run every self-test case against a real Mosquitto (started on free loopback ports with "
        "the project's configuration) and real device clients: power loss, broker restart and a full disk "
        "during an update; hostile input from a publisher credential without the signing key; attacks on the "
        "trust root; the broker's ACL matrix; 1,000 devices taking three releases back to back. Prints a table "
        "(case, group, runs, held, result, detail) and writes DIR/selftest.json and DIR/selftest.log. Exit "
        "status 0 only if every case held. docs/reliability.md lists the cases.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="the shorter version CI runs: fewer repetitions and 100 devices, same checks")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these cases (a case name, quoted if it has spaces, or a group)")
    parser.add_argument("--out", type=Path, default=Path("selftest-out"), metavar="DIR",
                        help="where selftest.json and selftest.log go (default selftest-out)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from simulator.reliability.runner import all_cases, run_selftest

    if args.list:
        for case in all_cases():
            print(f"{case.name:32}  {case.group}")
        return 0
    try:
        return run_selftest(args.out, args.quick, args.only)
    except ValueError as exc:
        print(f"rankcast selftest: {exc}")
        return 2
