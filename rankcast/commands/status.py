"""`rankcast status`: every device's retained status, with counts per version and per state."""

from __future__ import annotations

import argparse

from rankcast.broker_options import add_broker_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show the fleet: state, version and last error of every device",
        description="Read every device's retained status from the broker (needs a publisher account) and "
        "print a row per device, then how many devices run each version and are in each state.",
    )
    add_broker_arguments(parser)
    parser.add_argument("--model", metavar="ID", help="only devices that follow this model")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--watch", type=float, metavar="S",
                        help="read and print the fleet again every S seconds until interrupted (Ctrl-C)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time

    from publisher.release.fleet_status import format_report, read_fleet
    from rankcast.broker_options import broker_session

    if args.watch is not None and args.watch <= 0:
        from publisher.errors import ConfigError

        raise ConfigError(f"--watch {args.watch:g}: give the seconds between two reads, above 0")
    with broker_session(args) as session:
        while True:
            report = read_fleet(session, args.prefix, args.model)
            if args.model is not None and not report.devices:
                _check_model_known(read_fleet(session, args.prefix), args.model)
            text = json.dumps(report.to_dict(), indent=2) if args.json else format_report(report)
            if args.watch is None:
                print(text)
                return 0
            clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() and not args.json else ""
            print(f"{clear}{time.strftime('%H:%M:%S')} every {args.watch:g} s (Ctrl-C stops)\n{text}", flush=True)
            time.sleep(args.watch)


def _check_model_known(fleet, model: str) -> None:
    """Refuse --model MODEL when devices report but none follows it (a likely typo)."""
    if not fleet.devices:
        return
    from publisher.errors import UnknownModelError

    known = sorted({name for row in fleet.devices for name in row.versions})
    raise UnknownModelError(f"no device follows model {model!r}; the {len(fleet.devices)} devices report "
                      f"{', '.join(known) or 'no model yet'}: check the id, or leave out --model")
