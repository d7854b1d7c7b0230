"""`rankcast dashboard`: a web page that follows the fleet live, from the broker's statuses and manifests."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankcast.broker_options import add_broker_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="serve a live web page of the fleet: versions, states, the rollout wave, errors, history",
        description="Follow every device's status and every release manifest on the broker (a collector account "
        "is enough: `rankcast broker adduser NAME --role collector`) and serve a page that shows, live, the "
        "devices by version and state, each model's rollout wave with its successes and failures, errors by code, "
        "stale devices and the release history. The page only reads; it listens on 127.0.0.1 unless told "
        "otherwise (put it behind a proxy with authentication to share it).")
    add_broker_arguments(parser)
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="where the page is served (default 127.0.0.1:8080; port 0 takes a free one)")
    parser.add_argument("--refresh", type=float, default=2.0, metavar="S", help="seconds between page updates (2)")
    parser.add_argument("--rollout-state", action="append", default=[], type=Path, metavar="FILE",
                        help="a `rankcast rollout run` state file, to show its waves (repeat for several)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import time

    from publisher.dashboard.feed import FleetFeed
    from publisher.dashboard.server import DashboardServer
    from publisher.dashboard.view import fleet_view, rollout_state_check
    from publisher.errors import ConfigError
    from publisher.release.broker_errors import parse_broker_url
    from publisher.release.session import BrokerLogin

    if args.refresh <= 0:
        raise ConfigError(f"--refresh {args.refresh:g}: give the seconds between two page updates, above 0")
    host, port = _address(args.listen)
    for path in args.rollout_state:
        rollout_state_check(path)
    login = BrokerLogin(parse_broker_url(args.broker), args.username, args.password_file, args.cafile)
    feed = FleetFeed(login, args.prefix, args.timeout)
    states = tuple(args.rollout_state)

    def view() -> dict:
        return {**fleet_view(feed.snapshot(), time.time(), states), "broker": args.broker, "refresh_s": args.refresh}

    try:
        server = DashboardServer((host, port), view)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.listen}: {exc.strerror or exc}; give another --listen") from None
    try:
        feed.start()
    except BaseException:
        server.server_close()
        raise
    print(f"dashboard of {args.broker} at {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        feed.stop()
    return 0


def _address(text: str) -> tuple[str, int]:
    from publisher.errors import ConfigError

    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {text!r}: give HOST:PORT, such as 127.0.0.1:8080 (port 0: any free one)")
    return host.strip("[]"), int(port)
